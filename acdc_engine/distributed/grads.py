"""Distributed data parallel for a few parameters: gradients summed over ranks after backward.

Mask optimization trains a handful of mask tensors, not a network, so DDP's bucketed hooks
would buy nothing: after each backward, :func:`average_gradients` adds every rank's gradient
(one flat all-reduce) and divides by the weight each rank gives it, so every rank takes the
same optimizer step from the same gradient.
"""

from __future__ import annotations

import torch

from .context import Ranks

__all__ = ["average_gradients"]


def average_gradients(params, ranks: Ranks, weight: float = 1.0) -> None:
    """Replace each ``param.grad`` by ``sum_ranks(weight_r * grad_r) / sum_ranks(weight_r)``
    (``weight``: this rank's share, e.g. its number of examples in the step; a parameter
    without a gradient counts as zeros). One process: unchanged."""
    if not ranks.active:
        return
    params = [p for p in params]
    flat = [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) * weight
            for p in params]
    total = ranks.sum(torch.cat([*[f.double() for f in flat],
                                 torch.tensor([float(weight)], dtype=torch.float64,
                                              device=flat[0].device)]))
    w = float(total[-1])
    at = 0
    for p in params:
        n = p.numel()
        g = (total[at : at + n] / w).view_as(p).to(p.dtype)
        if p.grad is None:
            p.grad = g
        else:
            p.grad.copy_(g)
        at += n
