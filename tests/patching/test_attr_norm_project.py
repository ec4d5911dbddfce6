"""The norm fused with the q/k/v projections (issue 14): ``patching.norms.norm_project`` gives
the values and the per-head input gradients of the straightforward computation (norm every
head's copy of the stream, project it), for layer norms, RMS norms (Llama's ``w``, Gemma's
``1 + w``) and grouped-query attention, and steps aside for anything it cannot share exactly."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.patching import Workspace
from acdc_engine.patching.norms import norm_project
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


def test_workspace_buffer_is_reused_on_cpu():
    like, ws = torch.zeros(1), Workspace()
    a, b = ws.buffer(like, (3, 4)), ws.buffer(like, (3, 4))
    assert a.data_ptr() == b.data_ptr()
    assert Workspace().buffer(like, (3, 4)).data_ptr() != a.data_ptr()  # another workspace
    c = ws.buffer(like, (5, 4))  # a new shape replaces the cached buffer
    assert c.shape == (5, 4) and ws.buffer(like, (5, 4)).data_ptr() == c.data_ptr()
    ws.release()
    assert ws.spare_after(c[:4]) is None  # nothing held between passes


def test_the_fused_backward_writes_into_the_workspace_it_is_given():
    """With the forward's workspace, the q/k/v gradients are rows of its buffer, with the spare
    row after them; without one, a fresh tensor each time (nothing is reused behind a caller's
    back)."""
    torch.manual_seed(3)
    H, b, p, d, kh = 2, 2, 3, 16, 4
    norm, weights = _norm("layer", d), _weights(H, H, kh, d, True)
    x = torch.randn(b, p, d, requires_grad=True)
    gs = [torch.randn(b, H, p, kh) for _ in range(3)]

    def grads(ws):
        qkv = x.unsqueeze(0).expand(3 * H, b, p, d).split(H)
        return torch.autograd.grad(norm_project(norm, *qkv, weights, H, ws), qkv, gs)

    ws = Workspace()
    q, k, v = grads(ws)
    assert q.data_ptr() == ws.buffer(q, (3 * H + 1, b, p, d)).data_ptr()
    assert ws.spare_after(torch.cat([q, k, v])) is None  # a copy is not the buffer's rows
    joint = ws.spare_after(ws.buffer(q, (3 * H + 1, b, p, d))[: 3 * H])
    assert joint is not None and joint.data_ptr() == v[-1].data_ptr() + v[-1].numel() * 4
    fresh = grads(None)
    assert fresh[0].data_ptr() != q.data_ptr() and torch.equal(fresh[0], q)
    assert norm_project(norm, *x.unsqueeze(0).expand(3 * H, b, p, d).split(H), weights, H,
                        Workspace(fuse=False)) is None  # an unfused workspace declines


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
