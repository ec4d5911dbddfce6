"""Faithfulness curves as MIB defines them, and their two summary numbers CPR and CMD.

A method's edge scores define a family of circuits: the top ``n`` edges by ``|score|`` (then
:func:`~acdc_engine.circuit.prune_dead`) for ``n`` at each budget of :data:`BUDGETS`, in percent
of the graph's edges. The curve is the normalized faithfulness ``f`` of each circuit against
``x``, the fraction of the graph's edges the (pruned) circuit keeps, in [0, 1]. With the points
sorted by ``x`` and the trapezoid rule::

    CPR = sum_i (x[i+1] - x[i]) * (f[i] + f[i+1]) / 2                   area under the curve
    CMD = sum_i (x[i+1] - x[i]) * (|1 - f[i]| + |1 - f[i+1]|) / 2       area between it and 1

Higher CPR is better (the method's small circuits recover the behaviour); lower CMD is better
(they recover it *exactly*, overshooting counts as much as undershooting). The curve has points
only at the budgets (no point is added at x = 0); at 100% the circuit is the full model, f = 1.

Evaluating the curve is one pass over the data (:meth:`~acdc_engine.problem.Problem.evaluate`):
the ablated activations of a batch are computed once and shared by every budget's circuit, the
full model and the empty circuit; budgets that give the same circuit are evaluated once.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ..circuit import prune_dead, select
from ..graph import Graph, Keep, Scores
from ..problem import Problem

__all__ = [
    "BUDGETS",
    "Curve",
    "area_under",
    "budget_circuits",
    "cmd",
    "cpr",
    "curve_from_values",
    "evaluate_keeps",
    "faithfulness_curve",
]

BUDGETS: tuple[float, ...] = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100)
"""Edge budgets (percent of all edges) of MIB's faithfulness curves."""


def _trapezoid(x: list[float], y: list[float]) -> float:
    pts = sorted(zip(x, y))
    return sum((x2 - x1) * (y1 + y2) / 2 for (x1, y1), (x2, y2) in itertools.pairwise(pts))


def area_under(x, y) -> float:
    """Trapezoid-rule area under the points ``(x, y)`` (sorted by x first)."""
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length ({len(x)} vs {len(y)})")
    return _trapezoid([float(v) for v in x], [float(v) for v in y])


def cpr(x, f) -> float:
    """Area under the normalized-faithfulness curve ``f`` over the edge fractions ``x``."""
    return area_under(x, f)


def cmd(x, f) -> float:
    """Area between the normalized-faithfulness curve ``f`` and 1 (trapezoids of |1 - f|)."""
    return area_under(x, [abs(1.0 - float(v)) for v in f])


@dataclass(frozen=True)
class Curve:
    """A faithfulness curve: the raw metric of the top-n circuit at each budget.

    ``n_edges[i]`` is the size of the circuit at ``budgets[i]`` percent after pruning;
    ``values[i]`` its mean metric; ``full``/``empty`` the metric of the full model and of the
    empty circuit (everything ablated), which normalize it. ``unit`` is what the sizes count:
    ``edges``, or ``nodes`` for a node-level curve (:mod:`acdc_engine.evaluation.levels`; then
    ``n_edges`` counts heads and MLPs, and ``n_edges_total`` is the graph's).
    """

    budgets: tuple[float, ...]
    n_edges: tuple[int, ...]
    n_edges_total: int
    values: tuple[float, ...]
    full: float
    empty: float
    unit: str = "edges"

    @property
    def fractions(self) -> list[float]:
        """x: the fraction of the graph's edges (or nodes) each circuit keeps."""
        return [n / self.n_edges_total for n in self.n_edges]

    @property
    def normalized(self) -> list[float]:
        """f: (m(C) - m(empty)) / (m(full) - m(empty)) per budget (NaN if full == empty)."""
        d = self.full - self.empty
        return [float("nan") if d == 0 else (v - self.empty) / d for v in self.values]

    @property
    def cpr(self) -> float:
        return cpr(self.fractions, self.normalized)

    @property
    def cmd(self) -> float:
        return cmd(self.fractions, self.normalized)

    def smallest_reaching(self, target: float) -> int | None:
        """Index of the smallest budget whose normalized faithfulness reaches ``target``."""
        for i, f in enumerate(self.normalized):
            if not math.isnan(f) and f >= target:
                return i
        return None

    def as_dict(self) -> dict:
        return {**asdict(self), "fractions": self.fractions, "normalized": self.normalized,
                "cpr": self.cpr, "cmd": self.cmd}

    @classmethod
    def from_dict(cls, d: dict) -> Curve:
        return cls(tuple(d["budgets"]), tuple(d["n_edges"]), int(d["n_edges_total"]),
                   tuple(d["values"]), float(d["full"]), float(d["empty"]),
                   d.get("unit", "edges"))

    def table(self) -> str:
        """A readable table: budget, edges, metric, normalized faithfulness; then CPR, CMD."""
        lines = [f"{'budget %':>9} {self.unit:>7} {'metric':>11} {'faithfulness':>12}"]
        for b, n, v, f in zip(self.budgets, self.n_edges, self.values, self.normalized):
            lines.append(f"{b:>9g} {n:>7d} {v:>11.4g} {f:>12.3f}")
        lines.append(f"CPR {self.cpr:.3f} (area under the curve, higher is better)  "
                     f"CMD {self.cmd:.3f} (area between the curve and 1, lower is better)")
        return "\n".join(lines)

    def write_tsv(self, path: str | Path) -> Path:
        path = Path(path)
        with open(path, "w") as f:
            f.write(f"budget_pct\tn_{self.unit}\tfraction\tmetric\tnormalized\n")
            rows = zip(self.budgets, self.n_edges, self.fractions, self.values, self.normalized)
            for b, n, x, v, y in rows:
                f.write(f"{b:g}\t{n}\t{x:.6g}\t{v:.6g}\t{y:.6g}\n")
        return path


def budget_circuits(graph: Graph, scores: Scores, budgets=BUDGETS) -> list[Keep]:
    """The kept-edge vector (bool per edge) of the top-n circuit at each budget, pruned."""
    out = []
    cache: dict[int, torch.Tensor] = {}
    for pct in budgets:
        n = max(1, round(graph.n_edges * pct / 100))
        if n not in cache:
            cache[n] = prune_dead(graph, select(graph, scores, n_edges=n))
        out.append(cache[n])
    return out


def curve_from_values(budgets, keeps, values, full, empty, n_edges_total) -> Curve:
    """A :class:`Curve` from its parts: the kept-edge vectors per budget (their sizes), the mean
    metric of each, and the full and empty circuits' metrics."""
    return Curve(tuple(float(b) for b in budgets), tuple(int(k.sum()) for k in keeps),
                 int(n_edges_total), tuple(float(v) for v in values), float(full), float(empty))


def faithfulness_curve(
    problem: Problem,
    scores: Scores,
    budgets=BUDGETS,
    *,
    extra: list[torch.Tensor] | None = None,
    progress: bool = True,
) -> tuple[Curve, list[Keep], list[float]]:
    """Evaluate the curve of ``scores`` in one pass over the problem's batches.

    ``extra`` are more dense masks to evaluate in the same pass (e.g. the chosen circuit, when
    it is not on the budget grid); their mean metrics are returned third. Returns
    ``(curve, kept-edge vectors per budget, extra values)``.
    """
    keeps = budget_circuits(problem.graph, scores, budgets)
    values, extra_values, full, empty = evaluate_keeps(problem, keeps, extra, progress,
                                                       "faithfulness curve")
    curve = curve_from_values(budgets, keeps, values, full, empty, problem.graph.n_edges)
    return curve, keeps, extra_values


def evaluate_keeps(problem: Problem, keeps: list[Keep], extra: list | None = None,
                   progress: bool = True, desc: str = "faithfulness curve"):
    """The mean metric of each kept-edge vector of ``keeps`` (the same vector object is
    evaluated once), of each dense mask of ``extra``, of the full model and of the empty
    circuit, in one pass over the batches: ``(values, extra values, full, empty)``."""
    g = problem.graph
    unique: dict[int, int] = {}  # id of a keep vector -> its position among the masks
    masks = []
    for k in keeps:
        if id(k) not in unique:
            unique[id(k)] = len(masks)
            masks.append(g.mask_from_edges(k))
    extra = list(extra or [])
    n_curve = len(masks)
    masks += extra + [None, problem.empty_mask()]
    values = problem.evaluate(masks, progress=progress, desc=desc)
    return ([values[unique[id(k)]] for k in keeps], values[n_curve : n_curve + len(extra)],
            values[-2], values[-1])
