"""The kernels of ACDC's engine: the per-head attention kernel it re-runs heads with (checked
before it is trusted), and the low-rank unembedding of candidates whose final residual changes
only through a few heads.

**Low-rank unembedding.** Most of ACDC's candidates (the share measured on GPT-2 small is in
docs/benchmarks.md) re-run one head whose only kept path to the logits is its direct edge. Its
write lies in a ``d_head``-dimensional subspace (``z @ W_O``), so the candidate's final residual is
``x = F + Q c`` with ``F`` fixed for the node (every other writer) and ``c = Q^T o`` the write's
coordinates in an orthonormal basis ``Q`` [d, r] of that subspace. With a LayerNorm
``LN(x) = gamma * (x - mean x) * rstd(x) + beta`` before the unembedding ``W`` [vocab, d]::

    logits = rstd(x) * (W (gamma * P F) + W (gamma * P Q) c) + W beta + bias

(``P`` centres a vector). ``W (gamma * P F)`` ([batch, vocab]) and ``W (gamma * P Q)``
([vocab, r]) are computed once per node; per candidate the unembedding is one
``[rows, r + batch + 1] @ [r + batch + 1, vocab]`` product (:class:`LowRankUnembed`) instead of
``[rows, d] @ [d, vocab]``: 73 instead of 768 for GPT-2 small. The basis comes from the head
kernel's own outputs (an SVD of its writes on random inputs, :func:`head_basis`), and every
evaluation checks that the writes lie in it to float32 rounding (else the engine unembeds the
full residual): the logits equal the full unembedding's to rounding, as the engine's other
rearrangements do.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch

from ...graph import NodeKind
from ...models import LoadedModel, ModelAdapter

__all__ = ["HeadKernel", "head_kernel", "accepts_query_rows", "head_basis",
           "affine_unembedding", "LowRankUnembed", "Unembedding", "BASIS_TOL"]

LOW_RANK_MIN_ROWS = 2.0
"""The low-rank unembedding is used for a node expected to unembed at least this many times
``r + batch + 1`` rows (its per-node products cost about that many full-rank rows)."""

BASIS_TOL = 1e-5
"""Largest ``|o - Q Q^T o| / max |o|`` of a head's write ``o`` the low-rank unembedding
accepts (float32 rounding leaves about 1e-7)."""

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
        H, d, x, heads, tol = _probe(model)
        with torch.no_grad():
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


def _probe(model: LoadedModel):
    """Random q, k, v ``[H, batch 2, pos 3, d]`` (adapter prepared for them), the heads to
    check and the tolerance."""
    adapter = model.adapter
    H, d = adapter.n_heads, adapter.d_model
    gen = torch.Generator().manual_seed(0)
    x = [torch.randn(H, 2, 3, d, generator=gen).to(model.device, model.dtype) for _ in range(3)]
    tol = 1e-3 if model.dtype in (torch.float16, torch.bfloat16) else 1e-5
    adapter.prepare(torch.zeros(2, 3, dtype=torch.long, device=model.device))
    return H, d, x, sorted({0, H - 1}), tol


def accepts_query_rows(model: LoadedModel, kernel: HeadKernel, last_query_ok: bool) -> bool:
    """May ``q`` hold ``m`` query rows (``m`` not the number of keys), each attending to every
    key as the last query does? Checked at every layer against one-query calls (themselves
    checked by :func:`head_kernel`). The engine then tests a head's query edges as query rows
    of one attention over the current keys and values, instead of ``c`` copies of them."""
    if not last_query_ok:
        return False
    try:
        _, _, x, heads, tol = _probe(model)
        q, k, v = (t[heads] for t in x)
        with torch.no_grad():
            for layer in range(model.adapter.n_layers):
                rows = kernel(layer, heads, q[:, :, :2], k, v)  # 2 queries, 3 keys
                one = torch.cat([kernel(layer, heads, q[:, :, i : i + 1], k, v)
                                 for i in range(2)], 2)
                if (rows - one).abs().max() > tol * (1 + float(one.abs().max())):
                    return False
        return True
    except Exception:
        return False


def head_basis(kernel: HeadKernel, adapter: ModelAdapter, layer: int, head: int,
               device, dtype) -> torch.Tensor | None:
    """[d, r] orthonormal basis of the span of ``head``'s writes (rank ``r``, e.g. d_head), from
    an SVD (float64) of the kernel's outputs on 256 random query positions; None when the span
    is not small (``r > d / 4``)."""
    d = adapter.d_model
    gen = torch.Generator().manual_seed(7919 * (layer + 1) + head)
    q, k, v = (torch.randn(1, 8, 32, d, generator=gen).to(device, dtype) for _ in range(3))
    try:
        with torch.no_grad():
            adapter.prepare(torch.zeros(8, 32, dtype=torch.long, device=device))
            out = kernel(layer, [head], q, k, v)[0].reshape(-1, d).double()  # [256, d]
    except Exception:  # a kernel that cannot run on these inputs: no low-rank unembedding
        return None
    _, s, vh = torch.linalg.svd(out, full_matrices=False)
    r = int((s > s[0] * 1e-6).sum()) if s[0] > 0 else 0
    if r == 0 or r > d // 4 or r >= out.shape[0] // 2:
        return None
    return vh[:r].T.contiguous().to(dtype)  # [d, r]


def affine_unembedding(adapter: ModelAdapter):
    """``(layer_norm, weight [vocab, d], bias [vocab] | None)`` when the adapter declares its
    unembedding as ``F.linear(layer_norm(x), weight, bias)`` with a ``torch.nn.LayerNorm``
    (``unembed_linear()``); None otherwise (the engine then unembeds the full residual)."""
    fn = getattr(adapter, "unembed_linear", None)
    parts = fn() if fn is not None else None
    if parts is None or not isinstance(parts[0], torch.nn.LayerNorm):
        return None
    norm = parts[0]
    if norm.normalized_shape != (adapter.d_model,):
        return None
    return parts


class LowRankUnembed:
    """The low-rank unembedding of one node's candidates (module docstring), for one batch.

    ``node``: :meth:`node_part` (shared by the node's batches); ``F``: [b, d] the fixed part of
    the batch's final residual (last position)."""

    def __init__(self, node: tuple, F: torch.Tensor):
        parts, bases, G_T, const = node
        norm, W, _ = parts
        d = W.shape[1]
        gamma = norm.weight if norm.weight is not None else W.new_ones(d)
        self.eps, self.bases = norm.eps, bases
        self.b = F.shape[0]
        u = gamma * (F - F.mean(-1, keepdim=True))  # [b, d]: gamma * P F
        # [r + b + 1, vocab]: rows (W (gamma * P Q))^T, then W (gamma * P F_b), then W beta + bias
        self.A = torch.cat([G_T, u @ W.T, const[None]], 0).detach()
        self.eye = torch.eye(self.b, device=F.device, dtype=F.dtype)

    @staticmethod
    def node_part(parts, bases: list[torch.Tensor]) -> tuple:
        """What a node's batches share: ``(parts, bases, G^T [r, vocab], constant [vocab])``
        from :func:`affine_unembedding`'s ``parts`` and one [d, r_i] basis per re-run head
        with a kept edge into the logits."""
        norm, W, bias = parts
        d = W.shape[1]
        gamma = norm.weight if norm.weight is not None else W.new_ones(d)
        Q = torch.cat(bases, 1)  # [d, r]
        PQ = Q - Q.mean(0, keepdim=True)  # centred columns
        G_T = ((gamma[:, None] * PQ).T @ W.T).detach()  # [r, vocab]
        const = W.new_zeros(W.shape[0]) if norm.bias is None else W @ norm.bias  # [vocab]
        if bias is not None:
            const = const + bias
        return parts, bases, G_T, const.detach()

    def inputs(self, writes: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor | None:
        """The product's left side [c * b, r + b + 1] from each head's write ``writes[i]``
        [c, b, d] (times its coefficient) and the final residual ``x`` [c, b, d]; None when a
        write is not in its basis to :data:`BASIS_TOL`."""
        c, b, d = x.shape
        coords = []
        for o, Q in zip(writes, self.bases):
            o2 = o.reshape(-1, d)
            cq = o2 @ Q  # [c * b, r_i]
            err = (o2 - cq @ Q.T).abs().max()
            if err > BASIS_TOL * o2.abs().max().clamp_min(1e-30):
                return None
            coords.append(cq)
        var, _ = torch.var_mean(x, -1, unbiased=False)  # [c, b], as LayerNorm computes it
        rstd = torch.rsqrt(var + self.eps).reshape(-1, 1)  # [c * b, 1]
        onehot = self.eye.expand(c, b, b).reshape(c * b, b)
        one = x.new_ones(c * b, 1)
        return torch.cat([torch.cat(coords, 1) * rstd, onehot * rstd, one], 1)


class Unembedding:
    """The engine's ways to the logits of stacked candidates, with what they keep between
    evaluations: the reused logits buffer (``unembed_into``) and the per-head bases of the
    low-rank unembedding."""

    def __init__(self, adapter: ModelAdapter, heads_fn: HeadKernel, device, dtype):
        self.adapter, self.heads_fn, self.dev, self.dtype = adapter, heads_fn, device, dtype
        self.into = getattr(adapter, "unembed_into", None)
        self.affine = affine_unembedding(adapter)  # for the low-rank unembedding
        self._buf: torch.Tensor | None = None  # the reused logits workspace (flat)
        self._vocab: int | None = None
        self._bases: dict[tuple[int, int], torch.Tensor | None] = {}  # per head, lazily

    def vocab_size(self, like: torch.Tensor) -> int:
        if self._vocab is None:  # one row through the unembedding, once
            self._vocab = self.adapter.unembed(like.new_zeros(1, 1, self.adapter.d_model)).shape[-1]
        return self._vocab

    def buffer(self, rows: int, like: torch.Tensor) -> torch.Tensor:
        """A [rows, vocab] view of the logits workspace (grown when needed)."""
        n = rows * self.vocab_size(like)
        if self._buf is None or self._buf.numel() < n:
            self._buf = like.new_empty(n)
        return self._buf[:n].view(rows, self._vocab)

    def basis(self, layer: int, head: int) -> torch.Tensor | None:
        """:func:`head_basis` of a head, computed once."""
        key = (layer, head)
        if key not in self._bases:
            self._bases[key] = head_basis(self.heads_fn, self.adapter, layer, head, self.dev,
                                          self.dtype)
        return self._bases[key]

    def low_rank_bases(self, writers: list, batch: int, expected: int | None) -> list | None:
        """The bases of ``writers`` (the re-run writers with a kept edge into the logits) when
        they are all heads with a small write subspace (together ``r <= d / 4``) and the
        low-rank unembedding pays for ``expected`` candidates of ``batch`` examples; else None.
        Needs ``unembed_linear`` with a LayerNorm, ``unembed_into`` and float32/float64."""
        if (self.affine is None or self.into is None or not writers
                or self.dtype not in (torch.float32, torch.float64)):
            return None
        bases = []
        for node in writers:
            if node.kind is not NodeKind.ATTN:
                return None
            basis = self.basis(node.layer, node.head)
            if basis is None:
                return None
            bases.append(basis)
        r = sum(q.shape[1] for q in bases)
        if r > self.adapter.d_model // 4:
            return None
        if expected is not None and expected * batch < LOW_RANK_MIN_ROWS * (r + batch + 1):
            return None  # too few candidates to pay for the per-node products
        return bases
