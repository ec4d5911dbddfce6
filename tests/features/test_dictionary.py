"""Dictionaries (acdc_engine.features.dictionary, engine files in .formats): each activation's
semantics, bit-identical round trips of every kind through the engine's format, and refusals
(a corrupted, missing or inconsistent file; a dictionary for another model, layer or width) in
one line that names the file and the mismatch."""

from __future__ import annotations

import json

import pytest
import torch

from acdc_engine.errors import AcdcError
from acdc_engine.features import (
    SAE,
    CrossLayerTranscoder,
    Transcoder,
    TranscoderSet,
    check_dictionary,
    load_dictionary,
    save_dictionary,
)
from acdc_engine.features.dictionary import activate
from acdc_engine.testing.dictionaries import randomize, same_weights


def _random(d):
    """Give every parameter (thresholds included) random values."""
    return randomize(d, seed=1)


_same = same_weights


def test_topk_keeps_exactly_k_largest_relud():
    pre = torch.randn(50, 32, generator=torch.Generator().manual_seed(0)) + 1.0
    acts = activate(pre, "topk", k=5)
    assert ((acts != 0).sum(-1) <= 5).all() and ((pre.topk(5).values > 0).sum(-1)
                                                  == (acts > 0).sum(-1)).all()
    kept = pre.topk(5, dim=-1).indices
    assert torch.equal(acts.gather(-1, kept), torch.relu(pre.gather(-1, kept)))
    rest = torch.ones_like(pre, dtype=torch.bool).scatter(-1, kept, False)
    assert (acts[rest] == 0).all()


def test_jumprelu_passes_values_above_threshold_only():
    pre = torch.tensor([[-1.0, 0.2, 0.5, 0.7, 2.0]])
    th = torch.tensor([0.0, 0.3, 0.5, 0.1, 3.0])
    assert torch.equal(activate(pre, "jumprelu", threshold=th),
                       torch.tensor([[0.0, 0.0, 0.0, 0.7, 0.0]]))  # 0.5 > 0.5 is false


def test_sae_centres_its_input_and_transcoder_does_not():
    sae, tc = _random(SAE(6, 10)), _random(Transcoder(6, 10))
    x = torch.randn(3, 6)
    assert torch.allclose(sae.pre_acts(x), (x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    assert torch.allclose(tc.pre_acts(x), x @ tc.W_enc + tc.b_enc)


@pytest.mark.parametrize("make", [
    lambda: SAE(8, 16, layer=-1, model="m"),
    lambda: SAE(8, 16, layer=2, activation="topk", k=3),
    lambda: SAE(8, 16, layer=1, activation="jumprelu"),
    lambda: Transcoder(8, 16, layer=1, activation="jumprelu", model="m"),
    lambda: Transcoder(8, 16, d_out=5, layer=0, activation="topk", k=4),
    lambda: TranscoderSet([Transcoder(8, 12, layer=i, model="m") for i in range(3)]),
    lambda: CrossLayerTranscoder(3, 8, 12, activation="jumprelu", model="m"),
    lambda: CrossLayerTranscoder(2, 8, 12, activation="topk", k=2),
])
def test_engine_format_round_trip_is_bit_identical(tmp_path, make):
    d = _random(make())
    path = save_dictionary(d, tmp_path / "d.safetensors", {"fvu": 0.25})
    back = load_dictionary(path)
    assert type(back) is type(d) and back.config() == d.config() and _same(back, d)
    assert back.figures == {"fvu": 0.25} and back.source == str(path)
    x = torch.randn(4, 8)
    if isinstance(d, (SAE, Transcoder)):
        assert torch.equal(back(x), d(x))
    else:
        assert torch.equal(back.encode(1, x), d.encode(1, x))


def _one_line(exc_info, *words):
    msg = str(exc_info.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, (w, msg)


def test_missing_and_corrupted_files_are_refused(tmp_path):
    with pytest.raises(AcdcError) as e:
        load_dictionary(tmp_path / "nope.safetensors")
    _one_line(e, "nope.safetensors", "does not exist")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(AcdcError) as e:
        load_dictionary(bad)
    _one_line(e, "bad.safetensors", "not a readable safetensors")
    good = save_dictionary(Transcoder(8, 16), tmp_path / "t.safetensors")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-100])  # truncated
    with pytest.raises(AcdcError) as e:
        load_dictionary(cut)
    _one_line(e, "cut.safetensors")


def test_inconsistent_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    d = Transcoder(8, 16, layer=1)
    cfg = json.dumps(d.config())
    t = {k: v.detach().clone() for k, v in d.state_dict().items()}
    wrong = dict(t, W_dec=torch.zeros(16, 9))
    save_file(wrong, str(tmp_path / "shape.safetensors"),
              metadata={"format": "acdc-dictionary/1", "config": cfg})
    with pytest.raises(AcdcError) as e:
        load_dictionary(tmp_path / "shape.safetensors")
    _one_line(e, "shape.safetensors", "W_dec is [16, 9]", "[16, 8]")
    save_file({k: v for k, v in t.items() if k != "b_enc"}, str(tmp_path / "miss.safetensors"),
              metadata={"format": "acdc-dictionary/1", "config": cfg})
    with pytest.raises(AcdcError) as e:
        load_dictionary(tmp_path / "miss.safetensors")
    _one_line(e, "miss.safetensors", "missing b_enc")
    save_file(t, str(tmp_path / "other.safetensors"), metadata={"layer": "1"})
    with pytest.raises(AcdcError) as e:
        load_dictionary(tmp_path / "other.safetensors")
    _one_line(e, "other.safetensors", "not in the engine's format")
    save_file(t, str(tmp_path / "cfg.safetensors"),
              metadata={"format": "acdc-dictionary/1", "config": "{broken"})
    with pytest.raises(AcdcError) as e:
        load_dictionary(tmp_path / "cfg.safetensors")
    _one_line(e, "cfg.safetensors", "broken config")


def test_check_dictionary_refuses_other_model_layer_and_width(gpt2, tmp_path):
    n, d = gpt2.adapter.n_layers, gpt2.adapter.d_model
    ok = TranscoderSet([Transcoder(d, 8, layer=i, model=gpt2.id) for i in range(n)])
    check_dictionary(ok, gpt2)
    check_dictionary(SAE(d, 8, layer=-1), gpt2.adapter)
    with pytest.raises(AcdcError, match="covers 3 layers"):
        check_dictionary(TranscoderSet([Transcoder(d, 8, layer=i) for i in range(3)]),
                         gpt2.adapter)
    cases = [
        (TranscoderSet([Transcoder(d, 8, layer=i, model="other-model") for i in range(n)]),
         "trained on model 'other-model'"),
        (Transcoder(d, 8, layer=n), f"layer {n}"),
        (TranscoderSet([Transcoder(d, 8, layer=i) for i in range(n + 1)]),
         f"covers {n + 1} layers"),
        (CrossLayerTranscoder(n, d + 1, 8), f"d_model is {d}"),
        (SAE(d + 2, 8, layer=0), f"{d + 2} to {d + 2} dimensions"),
    ]
    for i, (bad, words) in enumerate(cases):
        path = save_dictionary(bad, tmp_path / f"bad{i}.safetensors")
        with pytest.raises(AcdcError) as e:
            check_dictionary(load_dictionary(path), gpt2)
        _one_line(e, f"bad{i}.safetensors", words)
