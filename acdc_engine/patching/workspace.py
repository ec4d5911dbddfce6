"""The patched forward's workspace: the storage its fused kernels share, made explicit.

A gradient run (EAP, EAP-IG) hands the adapter its workspace (``adapter.prepare(ids,
workspace)``), and the adapter passes it to the fused kernels it calls
(:func:`acdc_engine.patching.norms.norm_project`). Three things live here, and nowhere else:

* **the backward buffer** (:meth:`Workspace.buffer`): the fused q/k/v backward writes its ``3H``
  reader gradients into ``[3H + 1, b, p, d]`` rows; one buffer serves every layer of a pass, on
  every device (on CPU a fresh one costs its page faults again at every layer, about as much as
  the GEMM that fills it; on CUDA the caching allocator would make a fresh one cheap, but the
  spare row below needs the one buffer). It is safe because the forward's reader node consumes
  those gradients (a GEMM, a sum, a sink update) before backward reaches the next layer, in
  stream order on CUDA: a kernel reuses the buffer only when the forward handed it this
  workspace.
* **the spare row** after the q/k/v gradients, where the reader group backward reaches next
  (the MLP before the heads, one column) puts its gradient, so that both groups' edge products
  are one GEMM (:meth:`Workspace.merged_rows`; :class:`acdc_engine.patching.reads._Backward`).
  ``merged`` / ``unmerged`` count how often that happened or was declined, so a test sees a
  kernel change that silently loses the merged GEMM.
* **the factor recording** of EAP-IG (:meth:`Workspace.recording`): inside it, the adapter's
  next ``norm_project`` on one shared stream records its readers' gradients as factors
  (:class:`acdc_engine.patching.reader_factors.ReaderFactors`).
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

import torch

from .. import buffers

__all__ = ["Workspace"]

_THREAD = threading.local()


class Workspace:
    """Reusable storage of the fused kernels of one thread's patched runs (see the module)."""

    def __init__(self, fuse: bool = True):
        self.fuse = fuse  # the adapters may use the fused kernels
        self._buf: tuple[tuple, torch.Tensor] | None = None  # (key, [rows, b, p, d])
        self.factors = None  # the ReaderFactors recording the next norm_project, or None
        self.merged = 0  # reader groups whose edge products were merged into one GEMM
        self._held: torch.Tensor | None = None  # pending gradients living in the buffer
        self.unmerged = 0  # ... and the times a pending group could not be merged

    @staticmethod
    def for_thread() -> Workspace:
        """This thread's workspace (runs that name none share it)."""
        ws = getattr(_THREAD, "ws", None)
        if ws is None:
            ws = _THREAD.ws = Workspace()
        return ws

    def unfused(self) -> Workspace:
        """A workspace whose adapters decline the fused kernels (the reference path)."""
        return Workspace(fuse=False)

    def buffer(self, like: torch.Tensor, shape: tuple) -> torch.Tensor:
        """An uninitialized tensor of ``shape`` like ``like``: the cached one (at most one; a
        new shape, dtype or device replaces it), the same on every device."""
        key = (shape, like.dtype, like.device)
        if self._holds_buffer():  # a pending group's gradients are in it: write elsewhere
            return like.new_empty(shape)
        if self._buf is None or self._buf[0] != key:
            self._buf = (key, buffers.empty(shape, dtype=like.dtype, device=like.device))
        return self._buf[1]

    def hold(self, t: torch.Tensor | None) -> None:
        """Keep ``t`` (a pending reader group's gradients) from being overwritten: while it
        lies in the buffer, :meth:`buffer` hands out fresh tensors. None lets go."""
        self._held = t

    def _holds_buffer(self) -> bool:
        t, buf = self._held, None if self._buf is None else self._buf[1]
        return (t is not None and buf is not None
                and t.untyped_storage().data_ptr() == buf.untyped_storage().data_ptr())

    def spare_after(self, t: torch.Tensor) -> torch.Tensor | None:
        """The buffer row right after ``t`` when ``t`` [s, b, p, d] is the buffer's first
        ``s`` rows (contiguous, same shape and dtype) and a row follows them; else None."""
        if self._buf is None:
            return None
        ws = self._buf[1]
        if (t.data_ptr() != ws.data_ptr() or len(t) >= len(ws) or t.shape[1:] != ws.shape[1:]
                or t.dtype != ws.dtype or not t.is_contiguous()):
            return None
        return ws[len(t)]

    def merged_rows(self, first: torch.Tensor, then: torch.Tensor) -> torch.Tensor | None:
        """``cat([first, then])`` [s1 + s2, b, p, d] without copying ``first`` when ``then`` is
        one row and the buffer keeps a spare row after ``first``; a copy when ``first`` is one
        row too (the logits reader); else None (the products are formed one after the other).
        Counted in :attr:`merged` / :attr:`unmerged`."""
        joint = None
        if len(then) == 1 and first.shape[1:] == then.shape[1:] and first.dtype == then.dtype:
            if len(first) == 1:
                joint = torch.cat([first, then])
            elif (spare := self.spare_after(first)) is not None:
                spare.copy_(then[0])
                joint = first.new_empty(0).set_(first.untyped_storage(), first.storage_offset(),
                                                (len(first) + 1, *first.shape[1:]))
        if joint is None:
            self.unmerged += 1
        else:
            self.merged += 1
        return joint

    def release(self) -> None:
        """Drop the cached buffer (tens to hundreds of MB on a big model)."""
        self._buf = None

    @contextmanager
    def recording(self, factors):
        """Within it, the next fused ``norm_project`` on one shared stream hands its readers'
        gradients to ``factors`` (a ``ReaderFactors``) rather than returning them."""
        prev, self.factors = self.factors, factors
        try:
            yield factors
        finally:
            self.factors = prev

    def take_factors(self):
        """The recording's factors, once (one layer's q, k and v), or None."""
        rec, self.factors = self.factors, None
        return rec
