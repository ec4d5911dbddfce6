"""A layer norm shared by the readers of one layer, for gradient runs (EAP, EAP-IG).

These are the patched forward's fused kernels; model families call them from their attention
(``from acdc_engine.patching.norms import norm_project, shared_norm``), passing the
:class:`~acdc_engine.patching.workspace.Workspace` the forward handed them in ``prepare``.

In a gradient run with every edge kept, the patched forward (:mod:`acdc_engine.patching`) hands
the ``s`` readers of a layer (the q/k/v inputs of its heads) one residual stream expanded over
them (stride 0). An adapter that normalizes its per-reader input with :func:`shared_norm`
instead of calling the norm runs it once and shares the result, with the same values and the
same per-reader input gradients. Families call it on their attention inputs.

:func:`norm_project` goes one step further for the q, k and v inputs together: one norm and
three projections of the shared stream forward, and a backward that maps each head's output
gradient to its input gradient in one batched GEMM (the norm's backward folded into the
projection), written into one buffer for all 3H readers (no per-reader norm backward, no
concatenation); the GPT-2 and decoder families use it. Its backward writes into the
workspace's buffer (reused layer after layer on CPU) and leaves the spare row after the
gradients that :meth:`~acdc_engine.patching.workspace.Workspace.merged_rows` fills.
"""

from __future__ import annotations

import weakref

import torch

from .workspace import Workspace

__all__ = ["shared_norm", "norm_project", "head_terms", "scalar_terms", "weight_rows",
           "weight_mean", "shared_affine"]


class _SharedNorm(torch.autograd.Function):
    """``norm`` of ``x`` [s, b, p, d] whose rows are one tensor (an expanded view): the forward
    normalizes one row and returns it expanded (no ``s`` copies computed or kept for backward);
    the backward maps each row's gradient through the norm's backward at that one row (batched
    over the rows), so every reader still gets its own input gradient, exactly as from
    ``norm(x)``."""

    @staticmethod
    def forward(ctx, x, norm):
        x0 = x[0].detach().requires_grad_(True)  # [b, p, d]
        with torch.enable_grad():
            y0 = norm(x0)
        ctx.x0, ctx.y0 = x0, y0
        return y0.detach().expand(x.shape[0], *y0.shape)

    @staticmethod
    def backward(ctx, g):  # g [s, b, p, d] -> [s, b, p, d]
        (gx,) = torch.autograd.grad(ctx.y0, ctx.x0, g, retain_graph=True, is_grads_batched=True)
        return gx, None


def shared_norm(norm, x: torch.Tensor) -> torch.Tensor:
    """``norm(x)`` for an adapter's per-reader input ``x`` ([s, b, p, d] or [b, p, d]).

    In a gradient run with every edge kept (EAP, EAP-IG), :class:`_Read` hands the ``s`` readers
    of a layer one residual stream expanded over them (stride 0); normalizing it row by row
    would compute and keep ``s`` identical copies. Then the norm runs once (:class:`_SharedNorm`)
    and its result is shared; the gradients are the same. Anything else (a patched input, a
    norm with trainable weights) is ``norm(x)``.
    """
    if x.dim() != 4 or x.shape[0] < 2 or x.stride(0) != 0:
        return norm(x)
    if not torch.is_grad_enabled() or not x.requires_grad:
        return norm(x[0]).expand(x.shape)
    if any(p.requires_grad for p in getattr(norm, "parameters", lambda: ())()):
        return norm(x)
    return _SharedNorm.apply(x, norm)


# ----- the shared norm fused with the q/k/v projections --------------------------------------


def _stats(kind: str, x0: torch.Tensor, eps: float):
    """(xhat, rstd) of ``x0`` [b, p, d] in float32: the normalized stream before the norm's
    weight, and the inverse scale [b, p, 1], for a ``layer`` or ``rms`` norm."""
    x = x0.float()
    if kind == "layer":
        x = x - x.mean(-1, keepdim=True)
    rstd = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)  # [b, p, 1]
    return x * rstd, rstd


def _affine(norm, x0: torch.Tensor, y0: torch.Tensor):
    """``(kind, rstd [b,p,1], xhat [b,p,d], weight [d] or None, bias [d] or None)`` when
    ``norm`` is a layer norm or an RMS norm that computes ``y0 = norm(x0)`` as ``xhat * weight
    (+ bias)`` (checked on this very input), else None.

    Recognized: ``torch.nn.LayerNorm`` and the RMS norms of transformers (``*RMSNorm``, weight
    ``w`` or ``1 + w`` as in Gemma). Anything else keeps autograd's own backward.
    """
    if isinstance(norm, torch.nn.LayerNorm):
        kind, eps = "layer", norm.eps
    elif "RMSNorm" in type(norm).__name__:
        kind = "rms"
        eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
        if eps is None:
            eps = torch.finfo(x0.dtype).eps
    else:
        return None
    w, b = getattr(norm, "weight", None), getattr(norm, "bias", None)
    if kind == "rms":
        b = None
    xhat, rstd = _stats(kind, x0, float(eps))
    forms = (w, None if w is None else 1 + w.float())  # w, then Gemma's 1 + w
    known = _FORMS.get(norm)  # checked before: no check (and no device sync) again
    if known is not None:
        return None if known < 0 else (kind, rstd, xhat, forms[known], b)
    want = y0.float()
    tol = 1e-3 if y0.dtype in (torch.float32, torch.float64) else 3e-2
    scale = float(want.abs().max().clamp(min=1.0))
    for i, weight in enumerate(forms[: 1 if w is None else 2]):
        got = xhat if weight is None else xhat * weight.float()
        if b is not None:
            got = got + b.float()
        if float((got - want).abs().max()) <= tol * scale:
            _FORMS[norm] = i
            return kind, rstd, xhat, weight, b
    _FORMS[norm] = -1
    return None


_FORMS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""norm module -> which form :func:`_affine` found it to compute (index into (w, 1 + w)), or
-1 for neither."""


class _NormProject(torch.autograd.Function):
    """``project(norm(x))`` for the q, k and v inputs of one layer's heads when all three are
    one residual stream expanded over the heads (the unpatched stream of a gradient run).

    Forward: one norm and, per input, one projection of that stream (as :func:`shared_norm`).
    Backward: each head's input gradient straight from its output gradient ``g_h`` [b, p, k]
    through the norm's analytic backward, with the norm's weight folded into the projection
    (``W'_h = W_h * w``) and the two per-position reductions of the norm backward reduced on
    the ``k``-wide side::

        gx_h = rstd * (g_h W'_h - mean_d(g_h W'_h) - xhat * mean_d(g_h W'_h * xhat))
        (an RMS norm: without the middle term)
        mean_d(g_h W'_h) = g_h . mean_d(W'_h)         mean_d(g_h W'_h * xhat) = g_h . P_h / d

    with ``P_h = xhat W'_h^T`` [b, p, k] (the projection before its biases). One batched GEMM
    per input (``rstd g_h`` against ``W'_h``, with ``-rstd mean_d(g_h W'_h)`` as one more column
    against a row of ones) writes into one ``[3H, b, p, d]`` buffer, the ``xhat`` term is added
    in place, so the three gradients come back as
    consecutive views of it (no concatenation needed downstream), and no per-head copy of the
    stream, its norm or an intermediate gradient is made.
    """

    @staticmethod
    def forward(ctx, q, k, v, xn, aff, spec: tuple):
        # xn [b, p, d]: the model's own norm of the one stream q, k and v view (its values);
        # spec: (weights, n_heads, the workspace or None)
        weights, n_heads, ws = spec
        outs, ps = _project(xn, aff, weights, n_heads)
        kind, rstd, xhat, nw, _ = aff
        ctx.save_for_backward(rstd, xhat, *ps)
        ctx.weights, ctx.nw, ctx.n_heads, ctx.kind = weights, nw, n_heads, kind
        # a workspace comes from the patched forward, whose reader node only reads the
        # gradients we return (a GEMM, a sum, a sink update) before the next layer's backward:
        # one buffer serves every layer (Workspace.buffer); else a new one
        ctx.ws = ws
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):  # each [b, H, p, kh]
        rstd, xhat, *ps = ctx.saved_tensors
        H, dt = ctx.n_heads, grads[0].dtype
        b, p, d = xhat.shape
        # q, k, v input gradients, and a spare row for the next reader group's (merged_rows)
        shape = (3 * H + 1, b, p, d)
        buf = grads[0].new_empty(shape) if ctx.ws is None else ctx.ws.buffer(grads[0], shape)
        r, xh = rstd.to(dt), xhat.to(dt)  # [b, p, 1], [b, p, d]
        for i, ((w, _), g, P) in enumerate(zip(ctx.weights, grads, ps)):
            a, wf, m2 = head_terms(ctx.kind, w, ctx.nw, g, P, r, H)
            out = buf[i * H : (i + 1) * H].view(*a.shape[:-1], d)  # [n, g, b, p, d]
            torch.bmm(a.view(len(a), -1, a.shape[-1]), wf, out=out.view(len(a), -1, d))
            out.addcmul_(xh, m2[..., None])
        return buf[:H], buf[H : 2 * H], buf[2 * H : 3 * H], None, None, None


def _project(xn: torch.Tensor, aff, weights, n_heads: int):
    """The forward of the fused norm + projections: ``(outs, ps)``, per input the projection
    ``[b, H, p, kh]`` of the normed stream ``xn`` [b, p, d] (biases added, key/value heads
    repeated over their query heads) and ``P = xhat W'^T`` [b, n, p, kh] for the backward."""
    _, _, xhat, nw, nb = aff
    outs, ps = [], []
    for w, bias in weights:  # w [n, kh, d], bias [n, kh] or None
        y = torch.einsum("bpd,nkd->bnpk", xn, w)  # [b, n, p, kh]
        if xn.dtype in (torch.float32, torch.float64):  # P from y: no second projection
            c = torch.zeros(w.shape[:2], dtype=y.dtype, device=y.device)  # [n, kh]
            if nb is not None:
                c = w @ nb.to(w.dtype)
            ps.append(y - c[:, None])
        else:  # low precision: P in float32 from xhat
            wf = w.float() if nw is None else w.float() * nw.float()
            ps.append(torch.einsum("bpd,nkd->bnpk", xhat, wf).to(y.dtype))
        if bias is not None:
            y = y + bias[:, None]
        n = w.shape[0]
        outs.append(y if n == n_heads else y.repeat_interleave(n_heads // n, dim=1))
    return outs, ps


def scalar_terms(gg, P, r, d: int, wmean=None):
    """The two per-position scalars of one input's norm backward (see :class:`_NormProject`):
    ``(m2, c)``, each [n, g, b, p]: ``m2 = -rstd mean_d(g_h W'_h * xhat)`` and, for a layer
    norm (``wmean`` = ``mean_d(W'_h)`` [n, kh]; None for an RMS norm), ``c = -rstd
    mean_d(g_h W'_h)`` (else None). ``gg`` [b, n, g, p, kh] is the projection's output
    gradient grouped by key/value head, ``P`` [b, n, p, kh], ``r`` = rstd [b, p, 1], ``d`` the
    stream's width."""
    rr = r[..., 0]  # [b, p]

    def dot(x):  # sum_kh gg * x -> [n, g, b, p]: elementwise and a sum, where einsum would
        # copy both operands into a batched GEMM of one-row matrices (3x the time); products
        # in float32 at least, as the GEMM accumulates them
        up = torch.promote_types(gg.dtype, torch.float32)
        return (gg.to(up) * x.to(up)).sum(-1).to(gg.dtype).permute(1, 2, 0, 3).mul_(rr)

    m2 = dot(P[:, :, None]).mul_(-1 / d)
    return m2, (None if wmean is None else dot(wmean[:, None, None, :]).neg_())


def weight_rows(w, nw, ones: bool) -> torch.Tensor:
    """``W' = W * w_norm`` [n, kh, d] (and, with ``ones``, a row of ones below each head's
    rows: [n, kh + 1, d]) in one new tensor."""
    n, kh, d = w.shape
    if w.stride(-1) == 1:  # rows along d (a Linear's weight): the same layout
        out = w.new_empty(n, kh + ones, d)
    else:  # d outermost (GPT-2's Conv1D weight): keep it so, reads and writes stay in order
        out = w.new_empty(d, n, kh + ones).permute(1, 2, 0)  # a batched GEMM takes it as is
    if nw is None:
        out[:, :kh] = w
    else:
        torch.mul(w, nw.to(w.dtype), out=out[:, :kh])
    if ones:
        out[:, kh] = 1
    return out


def weight_mean(w, nw) -> torch.Tensor:
    """``mean_d(W'_h)`` [n, kh] for ``W' = W * w_norm`` (a layer norm's mean term), as one
    matrix-vector product: no W-sized temporary."""
    n, kh, d = w.shape
    if nw is None:
        return w.mean(-1)
    return (w.reshape(n * kh, d) @ nw.to(w.dtype)).div_(d).view(n, kh)


def head_terms(kind: str, w, nw, g, P, r, n_heads: int):
    """One input's per-head gradient terms (see :class:`_NormProject`)::

        gx_h = a_h @ wf  +  m2_h * xhat

    ``a`` [n, g, b, p, kh(+1)]: ``rstd g_h`` and, for a layer norm, ``-rstd mean_d(g_h W'_h)``
    as one more column; ``wf`` [n, kh(+1), d]: ``W'`` and, for a layer norm, a row of ones;
    ``m2`` [n, g, b, p]: ``-rstd mean_d(g_h W'_h * xhat)``. ``g`` [b, H, p, kh] is the
    projection's output gradient, ``r`` the norm's ``rstd`` [b, p, 1]; ``n`` key/value heads
    of ``g = H / n`` query heads each."""
    n, kh, d = w.shape
    layer = kind == "layer"  # an RMS norm subtracts no mean: no c column
    wf = weight_rows(w, nw, layer)
    gg = g.reshape(g.shape[0], n, n_heads // n, g.shape[2], kh)  # query heads by kv head
    m2, c = scalar_terms(gg, P, r, d, weight_mean(w, nw) if layer else None)
    a = g.new_empty(n, n_heads // n, g.shape[0], g.shape[2], kh + layer)
    torch.mul(gg.permute(1, 2, 0, 3, 4), r, out=a[..., :kh])
    if layer:
        a[..., kh] = c
    return a, wf, m2


def norm_project(norm, q, k, v, weights, n_heads: int, workspace: Workspace | None = None):
    """``(project(norm(q)), project(norm(k)), project(norm(v)))``, each [b, H, p, kh], in one
    step when it is exact to share (else None: the caller projects as usual).

    ``weights``: three ``(w [n, kh, d], bias [n, kh] or None)``, ``n`` = ``n_heads`` or the
    key/value heads of grouped-query attention (query head ``h`` uses ``h // (H / n)``).
    Shares when q, k and v are one stream expanded over the heads (stride 0, as the patched
    forward hands them in a gradient run with every edge kept), gradients are on, the norm's
    own parameters are frozen and it is a recognized layer or RMS norm (:func:`_affine`);
    see :class:`_NormProject` for the backward.

    ``workspace``: the one the patched forward handed the adapter (``adapter.workspace``): its
    buffer takes the gradients, and its ``fuse`` switch can turn this path off. Inside its
    :meth:`~acdc_engine.patching.workspace.Workspace.recording`, q, k and v may instead be the
    one shared stream itself ([b, p, d]); its readers' gradients then go to the recording's
    :class:`~acdc_engine.patching.reader_factors.ReaderFactors` (EAP-IG).
    """
    if workspace is not None and not workspace.fuse:
        return None
    if workspace is not None and workspace.factors is not None and q is k and k is v \
            and q.dim() == 3:
        return workspace.take_factors().project(norm, q, weights, n_heads)  # this layer's
    if not (q.requires_grad and q.dim() == 4 and len(q) >= 2):
        return None
    if any(t.stride(0) != 0 or t.data_ptr() != q.data_ptr() or t.shape != q.shape
           for t in (q, k, v)):
        return None
    shared = shared_affine(norm, q[0], weights)
    return None if shared is None else _NormProject.apply(
        q, k, v, *shared, (tuple(weights), n_heads, workspace))


def shared_affine(norm, x: torch.Tensor, weights):
    """``(norm(x), _affine(...))`` for one stream ``x`` [b, p, d] when the fused path applies
    (gradients on, the norm's and the projections' weights frozen, a recognized norm), else
    None."""
    if not torch.is_grad_enabled():
        return None
    if any(p.requires_grad for p in getattr(norm, "parameters", lambda: ())()):
        return None
    if any(t is not None and t.requires_grad for pair in weights for t in pair):
        return None  # weight gradients wanted: autograd's own path gives them
    x0 = x.detach()  # [b, p, d]
    with torch.no_grad():
        xn = norm(x0)  # the model's own norm: the forward values are its own
        aff = _affine(norm, x0, xn)
    return None if aff is None else (xn, aff)
