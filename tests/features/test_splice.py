"""The splice API (:func:`acdc_engine.features.splice.spliced_run`) on every built-in family.

With the error terms the spliced logits are the model's own to float32 rounding (bound from a
float64 run of the same splice); the frozen run computes the same values; fixed errors from an
unedited run reproduce that run; an edit changes the output through the decoder only; bad
transcoders are refused with one line.
"""

from __future__ import annotations

import pytest
import torch

from acdc_engine.errors import AcdcError
from acdc_engine.features import Transcoder, TranscoderSet
from acdc_engine.features.splice import spliced_run
from acdc_engine.patching import run
from acdc_engine.testing.builders import TinyShape, save_gpt2, save_hf, save_tracr
from acdc_engine.testing.dictionaries import random_transcoders
from acdc_engine.testing.numerics import assert_close_to_f64, float64

SLIDING = ["sliding_attention", "full_attention"]
#: name -> (model_type or builder, config overrides)
FAMILIES = {
    "gpt2": ("gpt2", {}),
    "llama": ("llama", {}),
    "neox": ("gpt_neox", {}),  # parallel attention and MLP
    "gemma2": ("gemma2", {"sliding_window": 3, "attn_logit_softcapping": 2.0,
                          "final_logit_softcapping": None, "layer_types": SLIDING}),
    "opt": ("opt", {}),
    "phi3": ("phi3", {}),
    "mixtral": ("mixtral", {}),
    "tracr": ("tracr", {}),
}


def build_family(name, root):
    """A tiny random model of family ``name`` saved under ``root`` and loaded by path."""
    from acdc_engine import load_model

    model_type, cfg = FAMILIES[name]
    if model_type == "gpt2":
        path = save_gpt2(root, n_layer=2, n_head=2, n_embd=16)
    elif model_type == "tracr":
        path = save_tracr(root)
    else:
        path = save_hf(root, model_type, shape=TinyShape(n_layer=2, n_head=2, n_kv=1, d=16),
                       **cfg)
    return load_model(str(path), device="cpu")


@pytest.fixture(scope="session", params=sorted(FAMILIES))
def family(request, tmp_path_factory):
    """One tiny model per built-in family (the splice and graph identities run on each)."""
    return build_family(request.param, tmp_path_factory.mktemp(request.param))


def ids_for(model, batch=2, length=6, seed=0):
    """Random token ids (not 0)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, model.hf.config.vocab_size, (batch, length), generator=g)


def test_errors_reproduce_the_model(family):
    tc = random_transcoders(family, cross=family.family == "gpt2")
    ids = ids_for(family)
    with torch.no_grad():
        own = run(family.adapter, ids)
        ours = spliced_run(family, ids, tc).logits
        with float64(family):
            ref = spliced_run(family, ids, tc.double()).logits
        tc.float()
    # 4x the model's own float32 error against float64 + 16 eps of the logits
    assert_close_to_f64(ours, own, ref, factor=4, ulps=16, what=family.family)
    pure = spliced_run(family, ids, tc, errors=False).logits
    assert (pure - own).abs().max() > 1e-3  # the pure replacement model is not the model


def test_frozen_run_same_values_other_gradient(family):
    tc = random_transcoders(family)
    ids = ids_for(family, batch=1)
    live = spliced_run(family, ids, tc)
    frozen = spliced_run(family, ids, tc, freeze=True)
    assert torch.equal(live.logits, frozen.logits)
    for a, b in zip(live.acts, frozen.acts):
        assert torch.equal(a, b)
    # gradients reach the first layer's MLP input through values and linear parts only: they
    # differ from the live run's (patterns and norm scales vary there) wherever there is either
    g_live = torch.autograd.grad(live.logits[0, -1].logsumexp(-1), live.mlp_in[0])[0]
    g_frozen = torch.autograd.grad(frozen.logits[0, -1].logsumexp(-1), frozen.mlp_in[0])[0]
    assert g_frozen.abs().max() > 0
    assert (g_live - g_frozen).abs().max() > 1e-6 * g_live.abs().max()
    # replayed (patterns and scales frozen in value too), the same inputs give the same values
    again = spliced_run(family, ids, tc, freeze=frozen.freezer.replay())
    torch.testing.assert_close(again.logits, frozen.logits, rtol=0, atol=1e-5)


def test_fixed_errors_and_edits(gpt2_family):
    model = gpt2_family
    tc = random_transcoders(model)
    ids = ids_for(model)
    with torch.no_grad():
        base = spliced_run(model, ids, tc)
        again = spliced_run(model, ids, tc, errors=base.errors)
        assert torch.equal(again.logits, base.logits)
        # ablating every feature: each MLP output is its decoder bias plus the fixed error
        zero = spliced_run(model, ids, tc, errors=base.errors,
                           edit=lambda layer, acts: torch.zeros_like(acts))
        assert all(float(a.abs().max()) == 0 for a in zero.acts)
        assert (zero.logits - base.logits).abs().max() > 1e-3
        # an edit with errors=True keeps this run's error terms, of the unedited activations:
        # layer 0 reads the same input as in the unedited run, so it has the same error
        same = spliced_run(model, ids, tc, edit=lambda layer, acts: torch.zeros_like(acts))
        assert torch.equal(same.errors[0], base.errors[0])
        torch.testing.assert_close(same.mlp_in[1], zero.mlp_in[1], rtol=0, atol=1e-5)
        for e, m, i in zip(base.errors, base.mlp_out, range(2)):
            recon = tc.decode(i, base.acts)
            torch.testing.assert_close(recon + e, m, rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def gpt2_family(tmp_path_factory):
    """The tiny GPT-2 of :data:`FAMILIES`."""
    return build_family("gpt2", tmp_path_factory.mktemp("gpt2-splice"))


def test_bad_transcoders_refused(gpt2_family, tmp_path):
    a = gpt2_family.adapter
    ids = ids_for(gpt2_family)
    short = TranscoderSet([Transcoder(a.d_model, 8, layer=0)])
    with pytest.raises(AcdcError, match="cover 1 layers; the model has 2"):
        spliced_run(gpt2_family, ids, short)
    wide = TranscoderSet([Transcoder(a.d_model + 1, 8, layer=i) for i in range(2)])
    with pytest.raises(AcdcError, match="d_model is 16"):
        spliced_run(gpt2_family, ids, wide)
    tracr_attn = build_attn_only(tmp_path)
    with pytest.raises(AcdcError, match="no MLPs"):
        spliced_run(tracr_attn, ids_for(tracr_attn), random_transcoders(tracr_attn))
    with pytest.raises(AcdcError, match="errors: 1 per-layer"):
        spliced_run(gpt2_family, ids, random_transcoders(gpt2_family), errors=[None])


def build_attn_only(root):
    """An attention-only tracr model (no MLPs to replace)."""
    from acdc_engine import load_model

    return load_model(str(save_tracr(root, d_mlp=0)), device="cpu")
