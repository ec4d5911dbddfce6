"""A reader group's input in the patched forward, and what its gradient gives ``mask.grad``.

The readers of one group (a layer's q/k/v inputs, an MLP's input, the logits' input) read the
writers upstream of them; :class:`_Read` forms their inputs (``resid + (m - 1)^T @ delta``, see
:mod:`acdc_engine.patching`) and, in backward, the edge products ``delta_u . g_v`` for all of
them in one GEMM (:class:`_Backward`), or hands the gradients to a sink (EAP-IG).
:func:`_read_rows` is the same forward without autograd, over the writers with a removed edge.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .. import buffers
from .token_groups import TokenGroups
from .workspace import Workspace


def _rows_any(t: torch.Tensor) -> torch.Tensor:
    """[W] bool: any entry of each row of a [W, R] or [W, R, G] bool tensor."""
    return t.reshape(t.shape[0], -1).any(1)


class _Backward:
    """Backward-side state of one patched run: the writers' ``delta`` and an optional sink.

    Every reader's gradient needs ``delta = out - ablated`` for the writers upstream of it;
    backward visits the layers last to first, so the first call sees the whole buffer and later
    calls take a prefix. Forming it once halves the backward products (one GEMM per layer
    instead of two). With a ``sink`` (:class:`~acdc_engine.patching.GradSink`), backward adds
    each reader input's gradient there instead of forming ``mask.grad``: EAP-IG, whose delta is
    the same at every step, sums the gradients of all steps and forms the edge products once
    (:func:`acdc_engine.patching.grad_sink.edge_grads`).

    ``mask.grad`` (:meth:`mask_grad`): a reader group marked ``merge`` (a layer's heads, the
    logits) leaves its product pending, and the group that backward reaches next (the MLP
    before it, one column) forms both in one GEMM: ``delta`` is read once instead of twice,
    and the MLP's matrix-vector product, bound by reading ``delta``, is gone. The MLP's column
    goes next to the pending gradients: into the spare row the fused q/k/v backward leaves
    after them in the run's ``workspace``
    (:meth:`~acdc_engine.patching.workspace.Workspace.merged_rows`), or a copy when the pending
    group is one column. Whatever group backward reaches next takes the pending products (a
    hook point that detaches the MLP's output, so that its reader's backward never runs, still
    gets every product): the workspace holds the pending gradients' rows meanwhile (a fused
    backward in between writes elsewhere), and a pending group that no later group takes is
    added to ``mask.grad`` when the backward pass ends (:meth:`_flush`).
    """

    def __init__(self, src, abl, workspace: Workspace, *, inplace: bool = False, sink=None,
                 groups=None):
        self.src, self.abl, self.inplace, self.sink = src, abl, inplace, sink
        self.workspace = workspace
        self.groups = groups  # TokenGroups of a position-aware mask, else None
        self.delta = src if abl is None else None  # no ablated outputs: src is the delta
        self.pending = None  # (n, cols, grad [s, b, p, d]) of a group marked ``merge``
        self.mask = None  # the run's mask (set by _Read.forward), for _flush

    def upto(self, n: int) -> torch.Tensor:
        if self.delta is None:  # in place when nobody else holds the buffer: no new 100s of MB
            self.delta = self.src.sub_(self.abl) if self.inplace else self.src - self.abl
        return self.delta[:n]

    def mask_grad(self, mask_shape, n: int, cols: slice, grad, merge: bool):
        """This reader group's share of ``mask.grad``, full-size (zero elsewhere), with the
        pending group's when there is one; None when this group's is left pending."""
        pend, self.pending = self.pending, None
        if self.groups is not None:  # [n, s, G]: per group, over its tokens
            return _placed(mask_shape, [(n, cols, self.groups.products(self.upto(n), grad))])
        if pend is None and merge:
            self.pending = (n, cols, grad)
            self.workspace.hold(grad)  # no fused backward overwrites it before it is taken
            torch.autograd.Variable._execution_engine.queue_callback(
                lambda: self._flush(mask_shape))
            return None
        self.workspace.hold(None)
        parts = [] if pend is None else [pend]
        joint = None if pend is None else self.workspace.merged_rows(pend[2], grad)
        if joint is not None:  # [s1 + s2, b, p, d]: one GEMM over the pending group's writers
            n1, c1, g1 = pend
            prod = self.upto(n1).reshape(n1, -1) @ joint.reshape(len(joint), -1).T
            parts = [(n1, c1, prod[:, : len(g1)]), (n, cols, prod[:n, len(g1) :])]
        else:
            parts = [(m, c, self.upto(m).reshape(m, -1) @ g.reshape(len(g), -1).T)
                     for m, c, g in parts + [(n, cols, grad)]]
        return _placed(mask_shape, parts)


    def _flush(self, mask_shape) -> None:
        """At the end of a backward pass: a pending group no later group took (the group
        backward would reach next never ran) is added to ``mask.grad`` here."""
        pend, self.pending = self.pending, None
        self.workspace.hold(None)
        if pend is None:
            return
        n, cols, grad = pend
        part = _placed(mask_shape, [(n, cols, self.upto(n).reshape(n, -1)
                                     @ grad.reshape(len(grad), -1).T)])
        mask = self.mask
        if mask is None or not mask.is_leaf:
            raise RuntimeError("a reader group's edge products were left pending at the end of "
                               "backward and the mask is not a leaf tensor to add them to; "
                               "make the mask a leaf (requires_grad_ on it) for this run")
        mask.grad = part.to(mask.dtype) if mask.grad is None else mask.grad + part.to(
            mask.grad.dtype)


def _placed(shape, parts) -> torch.Tensor:
    """A zero tensor of ``shape`` with each ``(n, cols, values)`` of ``parts`` at [:n, cols]."""
    vals = parts[0][2]
    out = vals.new_zeros(shape)
    for n, cols, v in parts:
        out[:n, cols] = v.to(out.dtype)
    return out


class Readers(NamedTuple):
    """One reader group of a :class:`_Read`: its reader columns, the sizes its inputs come
    back in (q, k and v: ``(H, H, H)``), and whether its edge products may wait for the group
    backward reaches next (:meth:`_Backward.mask_grad`)."""

    cols: slice
    parts: tuple
    merge: bool = False


class _Read(torch.autograd.Function):
    """``resid[None] + (m - 1)^T @ (src - abl)`` with ``m = mask[:n, cols]``: inputs of the
    ``s`` readers ``cols`` (of :class:`Readers` ``group``) from the ``n`` writers upstream.

    resid [b, p, dm]; mask [W, R] (or [W, R, G]); src [n, b, p, dm] and abl [n, b or 1, p, dm]
    (or None) are constants, used as views (the difference is never materialized in the forward
    pass) -> one [size, b, p, dm] tensor per entry of ``parts`` (sizes summing to s), so callers
    get q, k and v separately and backward never concatenates their gradients.
    ``patched`` False skips the product in the forward pass (every entry of m is 1). With the
    workspace's ``fuse`` on, the product accumulates onto ``resid`` in the GEMM itself
    (:func:`_corrected`); off, it is a product, a difference and a sum (the reference). The
    backward returns a full-size gradient for ``mask`` (:meth:`_Backward.mask_grad`), so that
    one node may carry the products of two reader groups (``merge``).
    """

    @staticmethod
    def forward(ctx, resid, mask, src, abl, patched: bool, state: _Backward, group: Readers):
        n, cols = src.shape[0], group.cols
        ctx.state, ctx.n, ctx.group, ctx.shape = state, n, group, mask.shape
        state.mask = mask
        m = mask[:n, cols]
        s = m.shape[1]
        out = resid.unsqueeze(0).expand(s, *resid.shape)
        if patched and state.groups is not None:  # m [n, s, G]: per token, its group's column
            out = out + state.groups.correction(m, src, abl)
        elif patched and state.workspace.fuse and resid.shape == src.shape[1:] \
                and resid.dtype == src.dtype:
            out = _corrected(resid, (m - 1).T.to(src.dtype), src, abl)
        elif patched:
            mt = (m - 1).T.to(src.dtype)  # [s, n]
            corr = (mt @ src.reshape(n, -1)).view(s, *src.shape[1:])
            if abl is not None:
                corr = corr - (mt @ abl.reshape(n, -1)).view(s, *abl.shape[1:])
            out = out + corr
        return out.split(group.parts, dim=0)

    @staticmethod
    def backward(ctx, *grads):
        g_m, state, cols = None, ctx.state, ctx.group.cols
        joined = _joined(grads)  # [s, b, p, dm] when the parts are one buffer, else None
        if state.sink is not None:  # per part when not joined: no concatenation
            state.sink.add(cols.start, grads if joined is None else (joined,))
        elif ctx.needs_input_grad[1]:
            # one GEMM over all s readers: it is memory-bound on delta, so read delta once
            grad = joined if joined is not None else torch.cat(grads)  # [s, b, p, dm]
            g_m = state.mask_grad(ctx.shape, ctx.n, cols, grad, ctx.group.merge)
        if joined is not None:
            return _sum0(joined), g_m, None, None, None, None, None
        g_resid = _sum0(grads[0])
        for g in grads[1:]:
            g_resid += _sum0(g)
        return g_resid, g_m, None, None, None, None, None


def _corrected(resid, mt, src, abl) -> torch.Tensor:
    """``resid[None] + mt @ (src - abl)`` [s, b, p, d] for ``mt`` [s, n]: the product
    accumulated onto the residual stream by the GEMM itself (no separate correction tensor
    and sum). A plain tensor: on huge pages (:mod:`acdc_engine.buffers`) the step measured
    slower, these inputs being new every layer and freed after backward."""
    s, n = mt.shape
    out = torch.empty((s, *resid.shape), dtype=resid.dtype, device=resid.device)
    flat = out.view(s, -1)
    torch.addmm(resid.reshape(1, -1), mt, src.reshape(n, -1), out=flat)
    if abl is not None:
        if abl.shape == src.shape:
            flat.addmm_(mt, abl.reshape(n, -1), alpha=-1)
        else:  # [n, 1, p, d]: one row per writer, broadcast over the batch
            out -= (mt @ abl.reshape(n, -1)).view(s, *abl.shape[1:])
    return out


def _sum0(t: torch.Tensor) -> torch.Tensor:
    """``t.sum(0)`` for the readers' gradients ``t`` [s, b, p, d]: on CPU in float32 as one
    matrix-vector product, which BLAS runs faster than the reduction (docs/benchmarks.md)."""
    if (not buffers.cpu_kernels(t) or t.dtype != torch.float32 or len(t) < 2
            or not t.is_contiguous()):
        return t.sum(0)
    return (t.new_ones(len(t)) @ t.view(len(t), -1)).view(t.shape[1:])


def _joined(grads: tuple) -> torch.Tensor | None:
    """The reader gradients ``grads`` ([size, b, p, d] each) as one [s, b, p, d] tensor without
    a copy: ``grads[0]`` alone, or a view when they are consecutive pieces of one contiguous
    buffer (the adapters' fused q/k/v backward, ``patching.norms.norm_project``, returns them
    so); None otherwise."""
    g0 = grads[0]
    if len(grads) == 1:
        return g0
    ptr, off = g0.untyped_storage().data_ptr(), g0.storage_offset()
    for g in grads:
        if (not g.is_contiguous() or g.shape[1:] != g0.shape[1:] or g.dtype != g0.dtype
                or g.untyped_storage().data_ptr() != ptr or g.storage_offset() != off):
            return None
        off += g.numel()
    shape = (sum(len(g) for g in grads), *g0.shape[1:])
    return g0.new_empty(0).set_(g0.untyped_storage(), g0.storage_offset(), shape)


def _read_rows(resid, m, src, abl, parts: tuple, groups: TokenGroups | None = None) -> tuple:
    """:class:`_Read`'s forward without autograd, over the writers (rows of ``m`` [n, s], or
    [n, s, G] with ``groups``) that have a removed edge into these readers only:
    ``resid[None] + (m - 1)^T @ (src - abl)`` restricted to those rows, one [size, b, p, d]
    tensor per entry of ``parts``."""
    rows = _rows_any(m < 1).nonzero()[:, 0]  # [k]
    if groups is not None:
        corr = groups.correction(m[rows], src[rows], None if abl is None else abl[rows])
        return (resid.unsqueeze(0) + corr).split(parts, dim=0)
    d = src[rows] if abl is None else src[rows] - abl[rows]  # [k, b, p, dm]
    mt = (m[rows] - 1).T.to(d.dtype)  # [s, k]
    corr = (mt @ d.reshape(len(rows), -1)).view(m.shape[1], *d.shape[1:])
    return (resid.unsqueeze(0) + corr).split(parts, dim=0)
