"""Dictionary formats (acdc_engine.features.formats): SAELens folders written and read back
bit for bit for every architecture the engine computes, folders in SAELens' own layout (v6 and
pre-6 configs) read with the same function, loading by Hugging Face cache id offline, and bad
folders refused in one line naming the file."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from acdc_engine.errors import AcdcError
from acdc_engine.features import (
    SAE,
    Transcoder,
    load_any,
    load_saelens,
    save_dictionary,
    save_saelens,
)
from acdc_engine.testing.dictionaries import randomize, same_weights


def _random(d, seed=0):
    return randomize(d, seed)


_same = same_weights


@pytest.mark.parametrize("make", [
    lambda: SAE(8, 16, layer=1, model="gpt2-ioi-bpe"),
    lambda: SAE(8, 16, layer=-1, activation="topk", k=3),
    lambda: SAE(8, 16, layer=2, activation="jumprelu"),
    lambda: Transcoder(8, 16, layer=0, model="m"),
    lambda: Transcoder(8, 16, d_out=6, layer=3, activation="jumprelu"),
])
def test_saelens_round_trip_is_bit_identical(tmp_path, make):
    d = _random(make())
    folder = save_saelens(d, tmp_path / "sae")
    cfg = json.loads((folder / "cfg.json").read_text())
    assert cfg["d_in"] == 8 and cfg["d_sae"] == 16 and cfg["metadata"]["hook_layer"] == d.layer
    back = load_saelens(folder)
    assert type(back) is type(d) and back.config() == d.config() and _same(back, d)
    assert load_any(folder).config() == d.config()  # the folder is recognised as SAELens
    x = torch.randn(5, 8)
    assert torch.equal(back(x), d(x))


def test_topk_transcoder_has_no_saelens_architecture(tmp_path):
    with pytest.raises(AcdcError, match="engine's format"):
        save_saelens(Transcoder(8, 16, activation="topk", k=2), tmp_path / "x")


def _saelens_folder(path, cfg, tensors):
    path.mkdir(parents=True)
    (path / "cfg.json").write_text(json.dumps(cfg))
    save_file(tensors, str(path / "sae_weights.safetensors"))
    return path


def _weights(d_in=8, d_sae=16, seed=3):
    g = torch.Generator().manual_seed(seed)
    return {"W_enc": torch.randn(d_in, d_sae, generator=g),
            "W_dec": torch.randn(d_sae, d_in, generator=g),
            "b_enc": torch.randn(d_sae, generator=g), "b_dec": torch.randn(d_in, generator=g)}


def test_reads_saelens_v6_and_pre6_layouts(tmp_path):
    w = _weights()
    v6 = {"architecture": "jumprelu", "d_in": 8, "d_sae": 16, "dtype": "float32",
          "device": "cpu", "apply_b_dec_to_input": True, "normalize_activations": "none",
          "reshape_activations": "none",
          "metadata": {"sae_lens_version": "6.54.12", "model_name": "gpt2",
                       "hook_name": "blocks.3.hook_resid_pre", "hook_head_index": None}}
    th = torch.rand(16)
    d = load_saelens(_saelens_folder(tmp_path / "v6", v6, {**w, "threshold": th}))
    assert d.activation == "jumprelu" and d.layer == 2 and d.model == "gpt2"  # resid_pre 3
    assert torch.equal(d.threshold, th)
    x = torch.randn(4, 8)
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    want = torch.relu(pre) * (pre > th)  # SAELens' JumpReLU
    assert torch.allclose(d.encode(x), want, atol=1e-6, rtol=0)
    old = {"d_in": 8, "d_sae": 16, "hook_point": "blocks.2.hook_resid_pre", "hook_layer": 2,
           "model_name": "gpt2-small", "activation_fn_str": "topk",
           "activation_fn": "topk", "activation_fn_kwargs": {"k": 4},
           "apply_b_dec_to_input": False, "normalize_activations": "none"}
    d = load_saelens(_saelens_folder(tmp_path / "old", old, w))
    assert d.activation == "topk" and d.k == 4 and d.layer == 1  # resid_pre of block 2
    pre = x @ w["W_enc"] + w["b_enc"]  # no b_dec on the input: folded into b_enc
    assert torch.allclose(d.pre_acts(x), pre, atol=1e-5, rtol=0)
    assert ((d.encode(x) != 0).sum(-1) <= 4).all()


@pytest.mark.parametrize("cfg,tensors,words", [
    ({"architecture": "gated", "d_in": 8, "d_sae": 16}, None, "architecture 'gated'"),
    ({"architecture": "standard", "d_in": 8, "d_sae": 16, "hook_layer": 0,
      "normalize_activations": "layer_norm"}, None, "normalize_activations"),
    ({"architecture": "standard", "d_in": 8, "d_sae": 12, "hook_layer": 0}, None,
     "W_enc is [8, 16], but its config needs [8, 12]"),
    ({"architecture": "standard", "d_in": 8, "d_sae": 16, "hook_name": "embed"}, None,
     "names no layer"),
    ({"architecture": "standard", "d_sae": 16}, None, "broken"),
    ({"architecture": "standard", "d_in": 8, "d_sae": 16, "hook_name": "blocks.1.attn.hook_z",
      "hook_layer": 1}, None, "reads 'blocks.1.attn.hook_z'"),
])
def test_bad_saelens_folders_are_refused_in_one_line(tmp_path, cfg, tensors, words):
    folder = _saelens_folder(tmp_path / "bad", cfg, tensors or _weights())
    with pytest.raises(AcdcError) as e:
        load_saelens(folder)
    assert "\n" not in str(e.value) and words in str(e.value) and "bad" in str(e.value)


def test_missing_folder_and_weights_are_refused(tmp_path):
    with pytest.raises(AcdcError, match="does not exist"):
        load_saelens(tmp_path / "none")
    folder = tmp_path / "noweights"
    folder.mkdir()
    (folder / "cfg.json").write_text(json.dumps({"architecture": "standard", "d_in": 8,
                                                  "d_sae": 16, "hook_layer": 0}))
    with pytest.raises(AcdcError, match="sae_weights.safetensors' does not exist"):
        load_saelens(folder)


def _cache(root, repo, files):
    """A Hugging Face hub cache holding ``repo`` at one commit with ``files``."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    base = root / f"models--{repo.replace('/', '--')}"
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(commit)
    snap = base / "snapshots" / commit
    for name, write in files.items():
        (snap / name).parent.mkdir(parents=True, exist_ok=True)
        write(snap / name)
    return root


def test_loads_by_hub_cache_id_offline(tmp_path):
    sae = _random(SAE(8, 16, layer=2, model="m"))
    tc = _random(Transcoder(8, 16, layer=1))
    src = save_saelens(sae, tmp_path / "src")
    cache = _cache(tmp_path / "hub", "someone/saes", {
        "layer_2/cfg.json": lambda p: p.write_bytes((src / "cfg.json").read_bytes()),
        "layer_2/sae_weights.safetensors":
            lambda p: p.write_bytes((src / "sae_weights.safetensors").read_bytes()),
        "tc.safetensors": lambda p: save_dictionary(tc, p)})
    assert _same(load_any("someone/saes/layer_2", cache_dir=cache), sae)
    assert _same(load_any("someone/saes/tc.safetensors", cache_dir=cache), tc)
    with pytest.raises(AcdcError) as e:
        load_any("someone/other-saes", cache_dir=cache)
    assert "\n" not in str(e.value) and "not in the local cache" in str(e.value)
    with pytest.raises(AcdcError, match="has no 'layer_9'"):
        load_any("someone/saes/layer_9", cache_dir=cache)


def test_load_transcoders_reads_every_format_and_refuses_one_layer(tmp_path):
    from acdc_engine.features import TranscoderSet, load_transcoders
    from acdc_engine.features.circuit_tracer_format import save_circuit_tracer

    ts = _random(TranscoderSet([Transcoder(8, 16, layer=i, model="m") for i in range(2)]))
    save_circuit_tracer(ts, tmp_path / "ct")
    assert _same(load_transcoders(tmp_path / "ct"), ts)
    assert _same(load_transcoders(save_dictionary(ts, tmp_path / "ts.safetensors")), ts)
    assert load_transcoders().n_layers == 4  # the shipped gpt2-ioi-bpe transcoders
    with pytest.raises(AcdcError) as e:
        load_transcoders(save_saelens(SAE(8, 16), tmp_path / "sae"))
    assert "\n" not in str(e.value) and "holds a SAE" in str(e.value)
