"""Exact single-edge patching: the slow, obviously-correct reference for attribution.

The score of ``u->v`` is ``m(every edge but u->v) - m(full)``, measured by actually removing the
edge in a patched run: one forward pass per edge per batch. Use it on small models (tests,
ground truth checks) and as the yardstick EAP approximates to first order.
"""

from __future__ import annotations

import torch

from ..graph import Scores
from ..problem import Problem

__all__ = ["exact_scores"]


def exact_scores(problem: Problem, edges: list[int] | None = None, chunk: int = 64,
                 progress: bool = True) -> Scores:
    """Per-edge ``m(without edge) - m(full)`` (NaN for edges not in ``edges``)."""
    g = problem.graph
    todo = list(range(g.n_edges)) if edges is None else list(edges)
    (full,) = problem.evaluate([None])
    scores = torch.full((g.n_edges,), float("nan"))
    for start in range(0, len(todo), chunk):
        part = todo[start : start + chunk]
        masks = []
        for e in part:
            m = g.full_mask(1.0)
            m[g.dense_index(e)] = 0
            masks.append(m)
        values = problem.evaluate(masks, progress=progress, desc=f"exact {start}/{len(todo)}")
        scores[part] = torch.tensor(values) - full
    return scores
