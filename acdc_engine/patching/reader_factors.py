"""EAP-IG's q/k/v reader gradients, summed over its steps as factors and formed once.

EAP-IG needs, per reader ``v``, the sum over its steps ``s`` of ``v``'s input gradient. For the
q, k and v inputs of a layer's heads that gradient passes through the layer's norm and the
head's projection (:class:`~acdc_engine.patching.norms._NormProject`)::

    gx_h^s = a_h^s @ W'_h  +  m2_h^s * xhat^s             (per position; ``W'_h`` with a row of
                                                           ones for a layer norm's mean term)

and ``W'_h`` is the same at every step. So the sum over steps is ``(sum_s a_h^s) @ W'_h +
sum_s m2_h^s * xhat^s``: the per-head factors ``a`` ([n, g, b, p, kh(+1)], the size of the
projection's output) and ``m2`` ([3H, b, p]) are summed or kept per step, with each step's
normalized stream ``xhat`` [b, p, d], and the ``[3H, b, p, d]`` gradients are formed once per
batch (:meth:`ReaderFactors.gradients`) instead of being written, added and summed at every
step. A step's backward then costs what the model's own does: the one stream's gradient comes
from the summed factors in one dense product (``sum_h a_h @ W'_h``), as in a plain backward.

Used by the patched forward (:func:`acdc_engine.patching.run`) for a
:class:`~acdc_engine.patching.GradSink` that allows it: each layer's attention runs on the one
stream inside the workspace's :meth:`~acdc_engine.patching.workspace.Workspace.recording`,
and a family whose attention calls :func:`~acdc_engine.patching.norms.norm_project` (the
built-in GPT-2 and decoder families) is recorded; any other family keeps the per-reader path.
"""

from __future__ import annotations

import torch

from .. import buffers
from .norms import _project, scalar_terms, shared_affine, weight_mean, weight_rows

__all__ = ["ReaderFactors"]


class ReaderFactors:
    """One layer's q/k/v reader gradients, summed over runs, as factors."""

    def __init__(self):
        self.anchor: torch.Tensor | None = None  # a tensor of the run that requires grad
        self.used = False  # set when a run's attention was recorded
        self._w: list[torch.Tensor] = []  # per input, the projection's weight [n, kh, d]
        self._nw: torch.Tensor | None = None  # the norm's weight (its 1 + w form) or None
        self._wmean: list[torch.Tensor | None] = []  # per input, mean_d(W') [n, kh] or None
        self._a: list[torch.Tensor] = []  # per input, sum over runs of rstd g [n, g, b, p, kh]
        self._c: list[torch.Tensor] = []  # per input, sum of -rstd mean_d(g W') [n, g, b, p]
        self._m2: list[torch.Tensor] = []  # per run [3H, b, p]
        self._xhat: list[torch.Tensor] = []  # per run [b, p, d]

    def project(self, norm, x: torch.Tensor, weights, n_heads: int):
        """The q, k and v projections of the one stream ``x`` [b, p, d] (each [b, H, p, kh]),
        recorded here for the backward; None when the norm cannot be shared."""
        shared = shared_affine(norm, x, weights)
        if shared is None:
            return None
        self.used = True
        anchor = x if self.anchor is None else self.anchor
        return _Record.apply(x, anchor, *shared, tuple(weights), n_heads, self)

    def _weights(self, weights, nw, kind: str) -> None:
        """The first run's weights (the same at every run: the model is frozen)."""
        if self._w:
            return
        self._w, self._nw = [w for w, _ in weights], nw
        self._wmean = [weight_mean(w, nw) if kind == "layer" else None for w in self._w]

    def _add(self, i: int, a: torch.Tensor, c: torch.Tensor | None) -> None:
        if a.dtype in (torch.float16, torch.bfloat16):  # sums over steps in float32
            a, c = a.float(), None if c is None else c.float()
        if i == len(self._a):
            self._a.append(a)  # fresh tensors, nobody else's
            if c is not None:
                self._c.append(c)
        else:
            self._a[i] += a
            if c is not None:
                self._c[i] += c

    @torch.no_grad()
    def gradients(self) -> torch.Tensor | None:
        """The summed input gradients of the layer's readers, [3H, b, p, d] (None: no run).

        Laid out position-major (a view of a [b * p, 3H, d] tensor): the per-position terms
        are then one batched product that writes it, and the edge products read it per
        position (:func:`acdc_engine.patching.grad_sink.edge_grads`) as fast as row-major."""
        if not self._xhat:
            return None
        b, p, d = self._xhat[0].shape
        dt = self._xhat[0].dtype
        rows = sum(a.shape[0] * a.shape[1] for a in self._a)
        # sum_s m2^s * xhat^s (+ sum_s c^s * 1): per position a [3H, K] @ [K, d] product
        m2, xhat = list(self._m2), list(self._xhat)
        if self._c:
            m2.append(torch.cat([c.reshape(-1, b, p) for c in self._c]))
            xhat.append(torch.ones_like(xhat[0]))
        K = len(m2)
        m2 = torch.stack(m2, -1).to(dt).view(rows, b * p, K).transpose(0, 1).contiguous()
        xhat = torch.stack(xhat, -2).to(dt).view(b * p, K, d)
        out = buffers.empty((b * p, rows, d), dtype=dt, device=xhat.device)
        torch.bmm(m2, xhat, out=out)
        heads = out.transpose(0, 1)  # [3H, b * p, d], a view
        r0 = 0
        for a, w in zip(self._a, self._w):  # += sum_s rstd g_h @ W'_h, per key/value group
            n, g = a.shape[:2]
            wf = weight_rows(w, self._nw, False).to(dt)  # [n, kh, d]
            for j in range(g):  # query head n * g + j
                heads[r0 + j : r0 + n * g : g].baddbmm_(a[:, j].reshape(n, b * p, -1).to(dt), wf)
            r0 += n * g
        return heads.view(rows, b, p, d)


class _Record(torch.autograd.Function):
    """``project(norm(x))`` for q, k and v of one stream ``x``; backward records the readers'
    factors in ``rec`` and returns the stream's gradient (the sum over readers) only, as a
    plain backward would: ``rstd (sum_h g_h W_h) * w_norm`` and the two per-position terms.
    Nothing of the weights' size is computed per run. ``anchor`` (unused) makes the outputs
    require grad when ``x`` does not (the first layer of a run whose embeddings are constants).
    """

    @staticmethod
    def forward(ctx, x, anchor, xn, aff, weights, n_heads: int, rec: ReaderFactors):
        outs, ps = _project(xn, aff, weights, n_heads)
        kind, rstd, xhat, nw, _ = aff
        ctx.save_for_backward(rstd, xhat, *ps)
        ctx.weights, ctx.nw, ctx.n_heads, ctx.kind, ctx.rec = weights, nw, n_heads, kind, rec
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):  # each [b, H, p, kh]
        rstd, xhat, *ps = ctx.saved_tensors
        rec, H, dt = ctx.rec, ctx.n_heads, grads[0].dtype
        r, xh = rstd.to(dt), xhat.to(dt)  # [b, p, 1], [b, p, d]
        b, p, d = xhat.shape
        rec._weights(ctx.weights, ctx.nw, ctx.kind)
        need = ctx.needs_input_grad[0]
        dense, csum, m2s = None, None, []
        for i, ((w, _), g, P) in enumerate(zip(ctx.weights, grads, ps)):
            n, kh = w.shape[:2]
            gg = g.reshape(b, n, H // n, p, kh)  # query heads grouped by key/value head
            m2, c = scalar_terms(gg, P, r, d, rec._wmean[i])
            a = g.new_empty(n, H // n, b, p, kh)  # rstd g, laid out for the batched GEMM
            rec._add(i, torch.mul(gg.permute(1, 2, 0, 3, 4), r, out=a), c)
            m2s.append(m2.reshape(-1, b, p))
            if need:  # sum_h g_h W_h as one dense product, as a plain backward does
                gs = (gg.sum(2) if gg.shape[2] > 1 else gg[:, :, 0]).transpose(1, 2)
                part = gs.reshape(b * p, n * kh) @ w.reshape(n * kh, d)
                dense = part if dense is None else dense.add_(part)
                if c is not None:
                    cs = c.sum((0, 1))  # [b, p]
                    csum = cs if csum is None else csum.add_(cs)
        m2 = torch.cat(m2s)  # [3H, b, p]
        rec._m2.append(m2)
        rec._xhat.append(xh)
        if not need:
            return None, None, None, None, None, None, None
        gx = dense.view(b, p, d)
        if ctx.nw is not None:
            gx.mul_(ctx.nw.to(dt))
        gx.mul_(r).addcmul_(xh, m2.sum(0)[..., None])
        if csum is not None:
            gx.add_(csum[..., None])
        return gx, None, None, None, None, None, None
