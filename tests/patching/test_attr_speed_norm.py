"""The shared norm of the unpatched stream and the grouped-query projection (issue 14): same
values and same per-reader gradients as the straightforward computation, fewer copies."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.patching.norms import shared_norm
from acdc_engine.testing.numerics import assert_close_to_f64


def _norms():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    torch.manual_seed(0)
    ln, rms = torch.nn.LayerNorm(16), LlamaRMSNorm(16)
    with torch.no_grad():
        for n in (ln, rms):
            n.weight.normal_()
        ln.bias.normal_()
    return ln, rms


@pytest.mark.parametrize("which", [0, 1])
def test_shared_norm_gives_the_per_row_values_and_gradients(which):
    norm = _norms()[which]
    norm.requires_grad_(False)
    resid = torch.randn(2, 5, 16, requires_grad=True)  # [b, p, d]
    x = resid.unsqueeze(0).expand(6, 2, 5, 16)  # six readers of one stream, as _Read gives
    g = torch.randn(6, 2, 5, 16)  # a different gradient per reader
    want = norm(x)
    (want_gx,) = torch.autograd.grad(want, x, g)
    got = shared_norm(norm, x)
    assert got.stride(0) == 0  # one normalized stream, not six copies
    (got_gx,) = torch.autograd.grad(got, x, g)
    x64 = resid.detach().double().requires_grad_(True).unsqueeze(0).expand(6, 2, 5, 16)
    ref = norm.double()(x64)
    (ref_gx,) = torch.autograd.grad(ref, x64, g.double())
    norm.float()
    # bound: 4x the per-row float32 norm's error against float64 + 16 eps max|value|
    assert_close_to_f64(got, want, ref, factor=4, ulps=16)
    assert_close_to_f64(got_gx, want_gx, ref_gx, factor=4, ulps=16)
    assert not torch.allclose(got_gx[0], got_gx[1])  # per-reader gradients, not a shared one
    with torch.no_grad():
        assert_close_to_f64(shared_norm(norm, x), want, ref, factor=4, ulps=16)  # as above


def test_shared_norm_leaves_other_inputs_to_the_norm():
    ln = _norms()[0]  # trainable weights: their gradients must flow, so no sharing
    x = torch.randn(2, 5, 16, requires_grad=True).unsqueeze(0).expand(3, 2, 5, 16)
    assert shared_norm(ln, x).stride(0) != 0
    ln.requires_grad_(False)
    patched = torch.randn(3, 2, 5, 16, requires_grad=True)  # distinct rows
    torch.testing.assert_close(shared_norm(ln, patched), ln(patched), rtol=0, atol=0)
    flat = torch.randn(2, 5, 16)
    torch.testing.assert_close(shared_norm(ln, flat), ln(flat), rtol=0, atol=0)


@pytest.mark.parametrize("bias", [False, True])
def test_grouped_query_projection_equals_repeated_weights(bias):
    from acdc_builtins.decoder import project

    torch.manual_seed(1)
    H, n, b, p, d, k = 6, 2, 2, 3, 8, 4
    w, bb = torch.randn(n, k, d), (torch.randn(n, k) if bias else None)
    w_rep = w.repeat_interleave(H // n, dim=0)  # what the projection did before
    b_rep = None if bb is None else bb.repeat_interleave(H // n, dim=0)
    x = torch.randn(H, b, p, d, requires_grad=True)
    want = torch.einsum("hbpd,hkd->bhpk", x, w_rep)
    if b_rep is not None:
        want = want + b_rep[:, None]
    got = project(x, w, bb, H)
    x64 = x.detach().double().requires_grad_(True)
    ref = torch.einsum("hbpd,hkd->bhpk", x64, w_rep.double())
    if b_rep is not None:
        ref = ref + b_rep.double()[:, None]
    # bound (each): 4x the repeated-weights float32 error against float64 + 16 eps max|value|
    assert_close_to_f64(got, want, ref, factor=4, ulps=16)
    g = torch.randn_like(want)
    assert_close_to_f64(torch.autograd.grad(got, x, g)[0], torch.autograd.grad(want, x, g)[0],
                        torch.autograd.grad(ref, x64, g.double())[0], factor=4, ulps=16)
    shared = x[0].detach()  # the shared-input path: [b, p, d]
    ref_shared = torch.einsum("bpd,hkd->bhpk", shared.double(), w_rep.double())
    if b_rep is not None:
        ref_shared = ref_shared + b_rep.double()[:, None]
    assert_close_to_f64(project(shared, w, bb, H), project(shared.expand(H, b, p, d), w, bb, H),
                        ref_shared, factor=4, ulps=16)
