"""A layer norm shared by the readers of one layer, for gradient runs (EAP, EAP-IG).

In a gradient run with every edge kept, the patched forward (:mod:`acdc_engine.patching`) hands
the ``s`` readers of a layer (the q/k/v inputs of its heads) one residual stream expanded over
them (stride 0). An adapter that normalizes its per-reader input with :func:`shared_norm`
instead of calling the norm runs it once and shares the result, with the same values and the
same per-reader input gradients. Families call it on their attention inputs.
"""

from __future__ import annotations

import torch

__all__ = ["shared_norm"]


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
