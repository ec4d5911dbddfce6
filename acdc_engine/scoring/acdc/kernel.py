"""The per-head attention kernel the engine re-runs heads with, checked before it is trusted."""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch

from ...models import LoadedModel, ModelAdapter

__all__ = ["HeadKernel", "head_kernel"]

HeadKernel = Callable[..., torch.Tensor]
"""``kernel(layer, heads, q, k, v) -> [len(heads), batch, pos, d_model]``; inputs per head."""


def head_kernel(model: LoadedModel) -> tuple[HeadKernel, bool]:
    """``(kernel, last_query_ok)``: the adapter's ``attn_heads_subset``.

    A kernel the family declares fast (``fast_head_subset``) is used only after it reproduces
    ``attn_heads`` on random input at every layer (and, with ``head_subset_last_query``, from
    the last query alone); otherwise the generic base implementation
    (``ModelAdapter.attn_heads_subset``: the whole layer, other heads fed zeros) runs instead.
    ``last_query_ok``: ``q`` may hold the last position only."""
    adapter = model.adapter
    if not adapter.fast_head_subset:
        return adapter.attn_heads_subset, False
    generic = partial(ModelAdapter.attn_heads_subset, adapter), False
    fast, last_ok = adapter.attn_heads_subset, bool(adapter.head_subset_last_query)
    try:  # prove it reproduces the adapter before trusting it
        H, d = adapter.n_heads, adapter.d_model
        gen = torch.Generator().manual_seed(0)
        x = [torch.randn(H, 2, 3, d, generator=gen).to(model.device, model.dtype)
             for _ in range(3)]  # q, k, v: [H, batch 2, pos 3, d]
        heads = sorted({0, H - 1})
        tol = 1e-3 if model.dtype in (torch.float16, torch.bfloat16) else 1e-5
        with torch.no_grad():
            adapter.prepare(torch.zeros(2, 3, dtype=torch.long, device=model.device))
            for layer in range(adapter.n_layers):
                want = adapter.attn_heads(layer, *x)[heads]
                scale = tol * (1 + float(want.abs().max()))
                got = fast(layer, heads, *(t[heads] for t in x))
                if (got - want).abs().max() > scale:
                    return generic
                if last_ok:
                    last = fast(layer, heads, x[0][heads][:, :, -1:], x[1][heads], x[2][heads])
                    if (last - want[:, :, -1:]).abs().max() > scale:
                        return generic
        return fast, last_ok
    except Exception:  # an adapter whose kernel does not fit its own attn_heads: fall back
        return generic
