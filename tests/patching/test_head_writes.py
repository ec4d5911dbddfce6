"""The heads' writes formed in the writer buffer (``ModelAdapter.attn_write``,
``patching.head_writes``) are ``attn_heads`` bit for bit, their sum is ``attn_heads(...).sum(0)``
bit for bit, and the sum's dense backward gives the per-head path's gradients."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from acdc_engine.patching import head_writes
from acdc_engine.patching.head_writes import per_head, write_sum
from acdc_engine.testing.numerics import assert_close_to_f64, float64


@contextmanager
def _frozen(model, monkeypatch):
    """The weights frozen, as ``attribute`` freezes them (else ``write_sum`` takes the per-head
    path that gives weight gradients), and a count of the dense-backward sums formed."""
    used = []
    real = head_writes._WriteSum.apply
    monkeypatch.setattr(head_writes._WriteSum, "apply",
                        lambda *a: used.append(1) or real(*a))
    with model.frozen():
        yield used


def _inputs(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, model.hf.config.vocab_size, (3, 6), generator=g)
    model.adapter.prepare(ids)
    x = model.adapter.embed(ids).detach()
    H = model.graph.n_heads
    noise = torch.randn((3, H, *x.shape), generator=g)
    return x, [(x[None] + 0.1 * n).contiguous() for n in noise]


@pytest.mark.parametrize("name", ["gpt2", "llama", "qwen2", "tracr"])
def test_attn_write_is_attn_heads_bit_for_bit(name, request, monkeypatch):
    model = request.getfixturevalue(name)
    adapter, H = model.adapter, model.graph.n_heads
    x, per = _inputs(model)
    with torch.no_grad(), _frozen(model, monkeypatch) as used:
        for layer in range(model.graph.n_layers):
            for q, k, v in ((x, x, x), per):
                heads = adapter.attn_heads(layer, q, k, v)
                out = torch.full((H, *x.shape), float("nan"))
                total = adapter.attn_write(layer, q, k, v, out)
                assert torch.equal(out, heads) and torch.equal(total, heads.sum(0))
    assert bool(used) == (name != "tracr")  # the built-in families form them in place


@pytest.mark.parametrize("name", ["gpt2", "llama", "qwen2"])
def test_attn_write_backward_equals_the_per_head_backward(name, request, monkeypatch):
    """The dense backward (``dz = g @ W_O^T``) gives every input the gradient that autograd
    gives through ``attn_heads(...).sum(0)``, for a shared stream and per-head inputs."""
    model = request.getfixturevalue(name)
    adapter, H = model.adapter, model.graph.n_heads
    x, per = _inputs(model, seed=1)
    g_out = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    with _frozen(model, monkeypatch) as used:
        for layer in range(model.graph.n_layers):
            for inputs in ((x, x, x), per):
                want = _grads(adapter, layer, inputs, g_out, H, dense=False)
                got = _grads(adapter, layer, inputs, g_out, H, dense=True)
                with float64(model):
                    ref = _grads(adapter, layer, [t.double() for t in inputs], g_out.double(),
                                 H, dense=False)
                # bound: 4x the per-head backward's float32 error against float64 + 16 eps
                # max|gradient|
                assert_close_to_f64(got, want, ref, factor=4, ulps=16)
    assert used  # the dense backward ran


def _grads(adapter, layer, inputs, g_out, H, dense):
    """q, k and v's gradients through attn_write's sum (dense) or attn_heads' (per head)."""
    fn = ((lambda *a: adapter.attn_write(layer, *a, g_out.new_empty(H, *g_out.shape))) if dense
          else (lambda *a: adapter.attn_heads(layer, *a).sum(0)))
    leaves = [t.clone().requires_grad_(True) for t in inputs]
    (fn(*leaves) * g_out).sum().backward()
    return [t.grad for t in leaves]


def test_write_sum_falls_back_when_weight_gradients_are_wanted():
    """A ``w_o`` that requires grad (someone differentiates the weights) takes the per-head
    path, whose autograd gives the weight gradient."""
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(2, 3, 4, 5, generator=gen)
    w = torch.randn(3, 5, 7, generator=gen, requires_grad=True)
    out = torch.empty(3, 2, 4, 7)
    total = write_sum(z, w, out)
    assert torch.equal(out, per_head(z, w).detach())
    total.sum().backward()
    want = z.sum((0, 2))[..., None].expand(3, 5, 7)
    # bound: 4x the float32 sum's error against float64 + 16 eps max|value| (the same sum)
    assert_close_to_f64(w.grad, want, z.double().sum((0, 2))[..., None].expand(3, 5, 7))
