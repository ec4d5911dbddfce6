"""EAP-IG's q/k/v reader gradients, summed over its steps as factors and formed once.

EAP-IG needs, per reader ``v``, the sum over its steps ``s`` of ``v``'s input gradient. For the
q, k and v inputs of a layer's heads that gradient passes through the layer's norm and the
head's projection (:class:`~acdc_engine.models.norms._NormProject`)::

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
:class:`~acdc_engine.grad_sink.GradSink` that allows it: each layer's attention runs on the one
stream inside :func:`~acdc_engine.models.norms.recording`, and a family whose attention calls
:func:`~acdc_engine.models.norms.norm_project` (the built-in GPT-2 and decoder families) is
recorded; any other family keeps the per-reader path.
"""

from __future__ import annotations

import torch

from .. import buffers
from .norms import _project, head_terms, shared_affine

__all__ = ["ReaderFactors"]


class ReaderFactors:
    """One layer's q/k/v reader gradients, summed over runs, as factors."""

    def __init__(self):
        self.anchor: torch.Tensor | None = None  # a tensor of the run that requires grad
        self.used = False  # set when a run's attention was recorded
        self._a: list[torch.Tensor] = []  # per input, summed over runs
        self._wf: list[torch.Tensor] = []  # per input, W' (with a row of ones)
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

    def _add(self, i: int, a: torch.Tensor, wf: torch.Tensor) -> None:
        if a.dtype in (torch.float16, torch.bfloat16):
            a = a.float()  # sums over steps in float32
        if i == len(self._a):
            self._a.append(a)  # a fresh tensor, nobody else's
            self._wf.append(wf)
        else:
            self._a[i] += a

    def _add_run(self, m2: torch.Tensor, xhat: torch.Tensor) -> None:
        self._m2.append(m2)
        self._xhat.append(xhat)

    def gradients(self) -> torch.Tensor | None:
        """The summed input gradients of the layer's readers, [3H, b, p, d] (None: no run)."""
        if not self._xhat:
            return None
        b, p, d = self._xhat[0].shape
        rows = sum(a.shape[0] * a.shape[1] for a in self._a)
        dt = self._wf[0].dtype
        out = buffers.empty((rows, b, p, d), dtype=dt, device=self._wf[0].device)
        r0 = 0
        for a, wf in zip(self._a, self._wf):  # the a @ W' term, one batched GEMM per input
            n, hn = len(a), a.shape[0] * a.shape[1]
            torch.bmm(a.view(n, -1, a.shape[-1]).to(dt), wf, out=out[r0 : r0 + hn].view(n, -1, d))
            r0 += hn
        S = len(self._m2)
        if S == 1:
            out.addcmul_(self._xhat[0].to(dt), self._m2[0][..., None].to(dt))
        else:  # sum_s m2^s * xhat^s: per position [3H, S] @ [S, d], added in place
            m2 = torch.stack(self._m2, -1).to(dt).view(rows, b * p, S).transpose(0, 1)
            xhat = torch.stack(self._xhat, -2).to(dt).view(b * p, S, d)
            out.view(rows, b * p, d).transpose(0, 1).baddbmm_(m2.contiguous(), xhat)
        return out


class _Record(torch.autograd.Function):
    """``project(norm(x))`` for q, k and v of one stream ``x``; backward records the readers'
    factors in ``rec`` and returns the stream's gradient (the sum over readers) only.
    ``anchor`` (unused) makes the outputs require grad when ``x`` does not (the first layer
    of a run whose embeddings are constants)."""

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
        dt = grads[0].dtype
        r, xh = rstd.to(dt), xhat.to(dt)  # [b, p, 1], [b, p, d]
        b, p, d = xhat.shape
        gx, m2s = None, []
        for i, ((w, _), g, P) in enumerate(zip(ctx.weights, grads, ps)):
            a, wf, m2 = head_terms(ctx.kind, w, ctx.nw, g, P, r, ctx.n_heads)
            ctx.rec._add(i, a, wf)
            m2s.append(m2.reshape(-1, b, p))
            if ctx.needs_input_grad[0]:  # sum_h a_h @ W'_h as one dense product
                n, K = len(a), a.shape[-1]
                part = a.sum(1).permute(1, 2, 0, 3).reshape(b * p, n * K) @ wf.reshape(n * K, d)
                gx = part if gx is None else gx.add_(part)
        m2 = torch.cat(m2s)  # [3H, b, p]
        ctx.rec._add_run(m2, xh)
        if gx is not None:
            gx = gx.view(b, p, d).addcmul_(xh, m2.sum(0)[..., None])
        return gx, None, None, None, None, None, None
