"""What an ACDC run decided (:class:`PruneResult`), and the warning for a tau that pruned every
edge or none (:class:`PruneWarning`, with a suggested range from :func:`suggest_tau`)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from ...graph import Graph

__all__ = ["PruneResult", "PruneWarning", "suggest_tau", "check_outcome"]


class PruneWarning(UserWarning):
    """A pruning run whose threshold removed every edge or none."""


@dataclass
class PruneResult:
    """What a pruning run decided.

    ``scores[e]`` is the metric change ``m(without e) - m(current)`` measured when ``e`` was
    tested (0 for edges removed untested because their node was dead; the attribution estimate
    for edges guided ACDC decided without a single-edge test). ``decisions`` lists
    ``(edge id, removed)`` in the order edges were decided by a test.
    """

    keep: torch.Tensor  # [n_edges] bool
    scores: torch.Tensor  # [n_edges] float32
    tested: torch.Tensor  # [n_edges] bool: decided by an exact test
    decisions: list[tuple[int, bool]]
    metric_full: float
    metric_final: float
    tau: float
    n_evaluations: int = 0  # candidate masks evaluated over the whole dataset
    node_evaluations: int = 0  # nodes re-run (per candidate, per dataset pass)
    seconds: float = 0.0
    nodes_done: int = 0
    complete: bool = True
    info: dict = field(default_factory=dict)

    @property
    def n_tested(self) -> int:
        return len(self.decisions)

    @property
    def n_kept(self) -> int:
        return int(self.keep.sum())


def suggest_tau(damages: list[float] | np.ndarray) -> tuple[float, float] | None:
    """A tau range from observed per-edge damages: their 50th to 95th percentile of the
    positive ones (None when none was positive)."""
    d = np.asarray([x for x in damages if math.isfinite(x) and x > 0])
    if d.size == 0:
        return None
    return float(np.quantile(d, 0.5)), float(np.quantile(d, 0.95))


def check_outcome(result: PruneResult, damages: list[float], g: Graph,
                  stacklevel: int) -> None:
    """Warn (PruneWarning) when tau removed every edge or none, with a suggested range; the
    text and range also go to ``result.info``. ``stacklevel`` (as in ``warnings.warn``)
    points at the user's call."""
    if not result.complete or not damages:
        return
    n_kept = result.n_kept
    if 0 < n_kept < g.n_edges:
        return
    rng = suggest_tau(damages)
    q = np.quantile(np.asarray(damages), [0.05, 0.5, 0.95])
    what = "pruned every edge" if n_kept == 0 else "pruned nothing"
    hint = (f"try tau between {rng[0]:.3g} and {rng[1]:.3g}" if rng is not None else
            "no removal made the metric worse: the metric may not depend on the input")
    msg = (f"tau={result.tau:g} {what} (the {len(damages)} tested edges' damages: 5%/50%/95% "
           f"quantiles {q[0]:.3g}/{q[1]:.3g}/{q[2]:.3g}); {hint}")
    result.info["warning"] = msg
    result.info["suggested_tau_low"] = None if rng is None else rng[0]
    result.info["suggested_tau_high"] = None if rng is None else rng[1]
    warnings.warn(msg, PruneWarning, stacklevel=stacklevel)
