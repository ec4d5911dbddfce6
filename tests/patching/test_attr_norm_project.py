"""The norm fused with the q/k/v projections (issue 14): ``models.norm_project`` gives the values
and the per-head input gradients of the straightforward computation (norm every head's copy of
the stream, project it), for layer norms, RMS norms (Llama's ``w``, Gemma's ``1 + w``) and
grouped-query attention, and steps aside for anything it cannot share exactly."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.models import norms
from acdc_engine.models.norms import _workspace, norm_project, release_workspace
from acdc_engine.testing.numerics import assert_close_to_f64


def _norm(kind: str, d: int):
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    norm = {"layer": lambda: torch.nn.LayerNorm(d), "llama": lambda: LlamaRMSNorm(d),
            "gemma": lambda: GemmaRMSNorm(d)}[kind]()
    with torch.no_grad():
        for p in norm.parameters():
            p.normal_()
    return norm.requires_grad_(False)


def _weights(H: int, n: int, kh: int, d: int, bias: bool):
    return [(torch.randn(m, kh, d) / d**0.5, torch.randn(m, kh) if bias else None)
            for m in (H, n, n)]  # q: every head; k, v: n key/value heads


def _straight(norm, x, weights, H):
    """Per head: norm of its own input, its own (key/value group's) weights."""
    outs = []
    for t, (w, b) in zip(x, weights):
        w_rep = w.repeat_interleave(H // w.shape[0], dim=0)  # [H, kh, d]
        y = torch.einsum("hbpd,hkd->bhpk", norm(t), w_rep)
        outs.append(y if b is None else y + b.repeat_interleave(H // w.shape[0], 0)[:, None])
    return outs


@pytest.mark.parametrize("kind,n,bias", [("layer", 6, True), ("llama", 2, False),
                                         ("gemma", 3, True), ("llama", 6, True)])
def test_norm_project_equals_the_per_head_computation(kind, n, bias):
    torch.manual_seed(0)
    H, b, p, d, kh = 6, 2, 5, 16, 4
    norm, weights = _norm(kind, d), _weights(H, n, kh, d, bias)
    resid = torch.randn(b, p, d, requires_grad=True)
    qkv = resid.unsqueeze(0).expand(3 * H, b, p, d).split(H)  # one stream, as _Read hands it
    gs = [torch.randn(b, H, p, kh) for _ in range(3)]
    want = _straight(norm, qkv, weights, H)
    want_g = torch.autograd.grad(want, qkv, gs)
    got = norm_project(norm, *qkv, weights, H)
    assert got is not None
    got_g = torch.autograd.grad(got, qkv, gs)
    # the straightforward computation in float64 on the same (float32) values
    qkv64 = resid.detach().double().requires_grad_(True).unsqueeze(0).expand(3 * H, b, p, d)
    qkv64 = qkv64.split(H)
    w64 = [(w.double(), None if bb is None else bb.double()) for w, bb in weights]
    ref = _straight(norm.double(), qkv64, w64, H)
    ref_g = torch.autograd.grad(ref, qkv64, [x.double() for x in gs])
    norm.float()
    # bound: 4x the straightforward float32 error against float64 + 16 eps max|value|
    assert_close_to_f64(list(got), list(want), list(ref), factor=4, ulps=16)
    assert_close_to_f64(list(got_g), list(want_g), list(ref_g), factor=4, ulps=16)
    for a in got_g:  # [H, b, p, d] per input: every head its own gradient
        assert not torch.allclose(a[0], a[1])
    # one buffer, q then k then v: a reader can take all 3H gradients without a concatenation
    base = got_g[0].untyped_storage().data_ptr()
    assert all(g.untyped_storage().data_ptr() == base for g in got_g)
    assert [g.storage_offset() for g in got_g] == [0, H * b * p * d, 2 * H * b * p * d]


def test_norm_project_steps_aside_when_sharing_is_not_exact():
    torch.manual_seed(1)
    H, b, p, d = 4, 2, 3, 8
    weights = _weights(H, H, 2, d, True)
    norm = _norm("layer", d)
    resid = torch.randn(b, p, d, requires_grad=True)
    shared = resid.unsqueeze(0).expand(3 * H, b, p, d).split(H)
    patched = torch.randn(3 * H, b, p, d, requires_grad=True).split(H)  # distinct rows
    assert norm_project(norm, *patched, weights, H) is None
    with torch.no_grad():
        assert norm_project(norm, *shared, weights, H) is None  # no gradients: nothing to fuse
    trainable = [(w.clone().requires_grad_(True), b) for w, b in weights]
    assert norm_project(norm, *shared, trainable, H) is None  # weight gradients wanted
    assert norm_project(norm.requires_grad_(True), *shared, weights, H) is None  # trainable

    class Odd(torch.nn.Module):  # named like an RMS norm, computes something else
        weight = torch.nn.Parameter(torch.ones(d), requires_grad=False)

        def forward(self, x):
            return torch.tanh(x)

    Odd.__name__ = "OddRMSNorm"
    assert norm_project(Odd(), *shared, weights, H) is None
    assert norm_project(torch.nn.GELU(), *shared, weights, H) is None


def test_workspace_is_reused_on_cpu_only_when_asked():
    like = torch.zeros(1)
    a, b = _workspace(like, (3, 4), True), _workspace(like, (3, 4), True)
    assert a.data_ptr() == b.data_ptr()
    assert _workspace(like, (3, 4), False).data_ptr() != a.data_ptr()
    c = _workspace(like, (5, 4), True)  # a new shape replaces the cached buffer
    assert c.shape == (5, 4) and _workspace(like, (5, 4), True).data_ptr() == c.data_ptr()
    release_workspace()
    assert norms._LOCAL.buf is None  # nothing held between passes


@pytest.mark.parametrize("kind", ["layer", "llama"])
def test_norm_project_in_bfloat16_follows_float32(kind):
    torch.manual_seed(2)
    H, b, p, d, kh = 4, 2, 3, 32, 8
    norm, weights = _norm(kind, d), _weights(H, 2, kh, d, True)
    resid = torch.randn(b, p, d)
    gs = [torch.randn(b, H, p, kh) for _ in range(3)]

    def grads(dtype):
        nm = _norm(kind, d).to(dtype)
        nm.load_state_dict({k: v.to(dtype) for k, v in norm.state_dict().items()})
        x = resid.to(dtype).requires_grad_(True)
        qkv = x.unsqueeze(0).expand(3 * H, b, p, d).split(H)
        ws = [(w.to(dtype), None if bb is None else bb.to(dtype)) for w, bb in weights]
        out = norm_project(nm, *qkv, ws, H)
        assert out is not None
        return torch.autograd.grad(out, qkv, [g.to(dtype) for g in gs])

    for lo, hi in zip(grads(torch.bfloat16), grads(torch.float32)):
        scale = float(hi.abs().max())
        # bfloat16 against float32: a priori 2^-8 relative per rounding, ~6 roundings deep
        # (norm, projection, backward): 6 x 2^-8 = 0.023 < 0.05 of the largest gradient
        assert float((lo.float() - hi).abs().max()) < 0.05 * scale
