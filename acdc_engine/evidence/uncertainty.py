"""Uncertainty on every number: bootstrap intervals over examples, circuit stability, redundancy.

    ci = faithfulness_interval(problem, circuit.mask())      # Interval(point, low, high)
    curve = curve_intervals(problem, scores)                 # .cpr, .cmd, .faithfulness[budget]
    st = circuit_stability(problem, "eap-ig", n_edges=91, n=5)   # Jaccard across subsamples
    red = redundancy(problem, keep, scores)                  # edges that matter only together

A *bootstrap interval* resamples the task's examples with replacement and recomputes the
statistic (percentile interval): the spread says how much the number depends on which examples
were drawn, so a reader can tell a real difference from noise. All metric values come from
:func:`acdc_engine.patching.run` (``per_example``); nothing here patches by other means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..circuit import prune_dead, select
from ..evaluation.curves import BUDGETS, budget_circuits
from ..graph import Keep, Mask, Scores
from ..problem import Problem

__all__ = ["Interval", "bootstrap", "per_example", "GapNoise", "gap_noise",
           "faithfulness_interval", "CurveIntervals",
           "curve_intervals", "subsample", "Stability", "circuit_stability", "method_agreement",
           "jaccard", "Redundancy", "redundancy"]


@dataclass(frozen=True)
class Interval:
    """A point estimate with its bootstrap ``level`` interval ``[low, high]`` over ``n``
    examples."""

    point: float
    low: float
    high: float
    level: float = 0.95
    n: int = 0

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    @property
    def width(self) -> float:
        return self.high - self.low

    def excludes_zero(self) -> bool:
        """The interval lies on one side of 0: the effect is distinguishable from none."""
        return self.low > 0 or self.high < 0

    def as_dict(self) -> dict:
        return {"point": self.point, "low": self.low, "high": self.high, "level": self.level,
                "n": self.n}

    def __str__(self) -> str:
        return f"{self.point:.3g} [{self.low:.3g}, {self.high:.3g}]"


Stat = Callable[[torch.Tensor], torch.Tensor]
"""``values [k, B, n] -> [B]``: a statistic of ``B`` resamples at once."""


def _row_mean(v: torch.Tensor) -> torch.Tensor:
    return v[0].mean(-1)


def bootstrap(values: torch.Tensor, stat: Stat | None = None, n_boot: int = 1000,
              level: float = 0.95, seed: int = 0) -> Interval:
    """Percentile bootstrap of ``stat`` over the examples (last axis) of ``values``.

    values: ``[n]`` or ``[k, n]`` (k quantities measured on the same n examples, resampled
    together so that ratios such as faithfulness keep their pairing). ``stat`` maps
    ``[k, B, n]`` to ``[B]`` (default: the mean of row 0). The point estimate is ``stat`` on the
    examples as drawn."""
    v = values.detach().double().cpu()
    v = v[None] if v.dim() == 1 else v  # [k, n]
    stat = stat or _row_mean
    n = v.shape[-1]
    point = float(stat(v[:, None, :])[0])
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, n, (n_boot, n), generator=gen)  # [B, n]
    boots = stat(v[:, idx])  # [B]
    boots = boots[torch.isfinite(boots)]
    if len(boots) == 0:
        return Interval(point, math.nan, math.nan, level, n)
    a = (1 - level) / 2
    lo, hi = torch.quantile(boots, torch.tensor([a, 1 - a], dtype=boots.dtype)).tolist()
    return Interval(point, min(lo, point), max(hi, point), level, n)


@torch.no_grad()
def per_example(problem: Problem, masks: list[Mask | None]) -> torch.Tensor:
    """The metric of every example under each mask (None = full model): ``[n_masks,
    n_examples]`` in batch order; the ablated activations of a batch are shared."""
    model = problem.model
    masks = [None if m is None else m.to(model.device, model.dtype) for m in masks]
    cols = []
    for i, batch in enumerate(problem.batches):
        abl = problem.ablated(i)
        rows = [problem.score(batch, m, abl).float().cpu() for m in masks]
        cols.append(torch.stack(rows))  # [n_masks, b]
    return torch.cat(cols, dim=1)


GAP_Z_MIN = 3.0
"""The full-vs-empty gap must be at least this many standard errors from zero."""
GAP_EFFECT_MIN = 0.2
"""... and at least this share of the per-example differences' spread (Cohen's "small")."""


@dataclass(frozen=True)
class GapNoise:
    """How well the examples pin down the full-vs-empty gap that normalized faithfulness
    divides by: ``gap`` = mean over examples of ``d_i = m_i(full) - m_i(empty)``, ``se`` its
    standard error, ``sd`` the spread of the ``d_i``."""

    gap: float
    se: float
    sd: float
    n: int

    @property
    def z(self) -> float:
        """The gap in standard errors (inf when every example has the same difference)."""
        return abs(self.gap) / self.se if self.se > 0 else math.inf

    @property
    def effect_size(self) -> float:
        """``|gap| / sd`` (Cohen's d_z of the paired differences)."""
        return abs(self.gap) / self.sd if self.sd > 0 else math.inf

    def too_noisy(self, z_min: float = GAP_Z_MIN, effect_min: float = GAP_EFFECT_MIN) -> bool:
        """True when the gap is within ``z_min`` standard errors of zero, or smaller than
        ``effect_min`` times the spread of the per-example differences."""
        return self.n >= 2 and (self.z < z_min or self.effect_size < effect_min)


def gap_noise(problem: Problem) -> GapNoise:
    """The per-example full-vs-empty differences of ``problem`` (two runs per batch)."""
    v = per_example(problem, [None, problem.empty_mask()]).double()
    d = v[0] - v[1]
    n = d.numel()
    sd = float(d.std()) if n > 1 else 0.0
    return GapNoise(float(d.mean()), sd / math.sqrt(n) if n else 0.0, sd, n)


def _normalized(v: torch.Tensor) -> torch.Tensor:
    """rows (circuit..., full, empty) [k, B, n] -> normalized faithfulness [k - 2, B]."""
    m = v.mean(-1)
    return (m[:-2] - m[-1]) / (m[-2] - m[-1])


def faithfulness_interval(problem: Problem, mask: Mask, n_boot: int = 1000,
                          level: float = 0.95, seed: int = 0) -> Interval:
    """Normalized faithfulness of the circuit ``mask`` with its bootstrap interval (circuit,
    full and empty metric resampled on the same examples)."""
    values = per_example(problem, [mask, None, problem.empty_mask()])
    return bootstrap(values, lambda v: _normalized(v)[0], n_boot, level, seed)


@dataclass
class CurveIntervals:
    """MIB's curve with intervals: normalized faithfulness per budget, CPR and CMD."""

    budgets: list[float]
    fractions: list[float]
    faithfulness: list[Interval]
    cpr: Interval
    cmd: Interval

    def as_dict(self) -> dict:
        return {"budgets": self.budgets, "fractions": self.fractions,
                "faithfulness": [i.as_dict() for i in self.faithfulness],
                "cpr": self.cpr.as_dict(), "cmd": self.cmd.as_dict()}


def _area(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Trapezoid area under f [nb, B] over sorted x [nb] -> [B]."""
    return ((x[1:] - x[:-1])[:, None] * (f[1:] + f[:-1]) / 2).sum(0)


def curve_intervals(problem: Problem, scores: Scores, budgets=BUDGETS, n_boot: int = 1000,
                    level: float = 0.95, seed: int = 0) -> CurveIntervals:
    """The faithfulness curve of ``scores`` (as :func:`~acdc_engine.evaluation.curves.
    faithfulness_curve`) with a bootstrap interval at every budget and on CPR and CMD."""
    g = problem.graph
    keeps = budget_circuits(g, scores, budgets)
    values = per_example(problem, [g.mask_from_edges(k) for k in keeps]
                         + [None, problem.empty_mask()])
    x = torch.tensor([float(k.sum()) / g.n_edges for k in keeps], dtype=torch.float64)
    order = torch.argsort(x, stable=True)
    xs = x[order]
    per_budget = [bootstrap(values[[i, -2, -1]], lambda v: _normalized(v)[0], n_boot, level,
                            seed) for i in range(len(keeps))]
    cpr = bootstrap(values, lambda v: _area(xs, _normalized(v)[order]), n_boot, level, seed)
    cmd = bootstrap(values, lambda v: _area(xs, (1 - _normalized(v)[order]).abs()), n_boot,
                    level, seed)
    return CurveIntervals([float(b) for b in budgets], x.tolist(), per_budget, cpr, cmd)


# ----- stability -----------------------------------------------------------------------------
def subsample(problem: Problem, fraction: float = 0.5, seed: int = 0) -> Problem:
    """The same problem on a random ``fraction`` of its examples (without replacement; the
    ablation, e.g. mean activations, is shared)."""

    n = problem.n_examples
    k = max(1, round(n * fraction))
    chosen = set(torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k].tolist())
    batches, start, abl = [], 0, {}
    for i, b in enumerate(problem.batches):
        idx = [j for j in range(len(b)) if start + j in chosen]
        start += len(b)
        if not idx:
            continue
        t = torch.tensor(idx, device=b.clean.device)
        batches.append(b.select(idx))
        if i in problem._ablated and (a := problem._ablated[i]) is not None and a.shape[1] > 1:
            abl[len(batches) - 1] = a.index_select(1, t.to(a.device))
    out = Problem(problem.model, batches, problem.metric, problem.ablation, problem.cache)
    out._ablated = abl
    return out


def jaccard(a: set, b: set) -> float:
    """``|a & b| / |a | b|`` (1.0 for two empty sets): how much two circuits' edge sets agree."""
    return len(a & b) / len(a | b) if a | b else 1.0


@dataclass
class Stability:
    """Kept edges of a reference circuit and of circuits found again on other data (subsamples,
    seeds) or by other methods; ``labels`` name them."""

    reference: list[str]
    circuits: list[list[str]]
    labels: list[str]
    kind: str = "subsamples"

    @property
    def jaccard_to_reference(self) -> list[float]:
        ref = set(self.reference)
        return [jaccard(ref, set(c)) for c in self.circuits]

    @property
    def mean_pairwise_jaccard(self) -> float:
        sets = [set(c) for c in self.circuits]
        pairs = [jaccard(a, b) for i, a in enumerate(sets) for b in sets[i + 1 :]]
        return sum(pairs) / len(pairs) if pairs else 1.0

    def frequency(self) -> dict[str, float]:
        """Per edge of any circuit: the fraction of the circuits that keep it."""
        out: dict[str, float] = {}
        for c in self.circuits:
            for e in c:
                out[e] = out.get(e, 0) + 1 / len(self.circuits)
        return out

    def dropped(self) -> list[tuple[str, int]]:
        """Reference edges some circuits drop, with how many drop them (most often first)."""
        sets = [set(c) for c in self.circuits]
        out = [(e, sum(e not in s for s in sets)) for e in self.reference]
        return sorted([t for t in out if t[1] > 0], key=lambda t: (-t[1], t[0]))

    def sentences(self, top: int = 5) -> list[str]:
        """The stability in plain sentences, generated from the numbers."""
        n = len(self.circuits)
        jr = self.jaccard_to_reference
        out = [f"Across {n} {self.kind}, the circuit's kept edges overlap the reference circuit "
               f"with Jaccard {min(jr):.2f} to {max(jr):.2f} (mean {sum(jr) / n:.2f})."]
        drops = self.dropped()
        if not drops:
            out.append(f"Every one of the {len(self.reference)} edges is kept in all {n} "
                       f"{self.kind}.")
        else:
            stable = len(self.reference) - len(drops)
            out.append(f"{stable} of {len(self.reference)} edges are kept in all {n} "
                       f"{self.kind}; the others are less certain:")
            out += [f"{k} of {n} {self.kind} drop edge {e}." for e, k in drops[:top]]
        return out

    def as_dict(self) -> dict:
        return {"kind": self.kind, "labels": self.labels, "reference": self.reference,
                "circuits": self.circuits, "jaccard_to_reference": self.jaccard_to_reference,
                "mean_pairwise_jaccard": self.mean_pairwise_jaccard,
                "dropped": [list(t) for t in self.dropped()]}


def _find(problem: Problem, method: str, settings: dict | None, n_edges: int) -> list[str]:
    from ..plugins import registry

    m = registry().method(method)
    scores = m.run(problem, m.configure(settings or {}), False).scores.detach().float().cpu()
    g = problem.graph
    keep = prune_dead(g, select(g, scores, n_edges=n_edges))
    return [g.edges[i].name for i in keep.nonzero()[:, 0].tolist()]


def circuit_stability(problem: Problem, method: str, n_edges: int, n: int = 5,
                      fraction: float = 0.5, seed: int = 0, settings: dict | None = None,
                      reference: list[str] | None = None) -> Stability:
    """Find the top-``n_edges`` circuit again on ``n`` random subsamples (``fraction`` of the
    examples each, seeds ``seed .. seed + n - 1``) and compare with ``reference`` (default:
    the circuit found on all examples)."""
    ref = reference if reference is not None else _find(problem, method, settings, n_edges)
    from ..progress import progress_bar

    circuits = [_find(subsample(problem, fraction, seed + i), method, settings, n_edges)
                for i in progress_bar(range(n), desc=f"rediscovering ({method}) on subsamples",
                                      total=n)]
    return Stability(sorted(ref), [sorted(c) for c in circuits],
                     [f"subsample {i + 1}" for i in range(n)], "subsamples")


def method_agreement(problem: Problem, methods: list[str], n_edges: int,
                     reference: list[str] | None = None) -> Stability:
    """The top-``n_edges`` circuit of each method, against ``reference`` (default: the first
    method's)."""
    circuits = [_find(problem, m, None, n_edges) for m in methods]
    ref = reference if reference is not None else circuits[0]
    return Stability(sorted(ref), [sorted(c) for c in circuits], list(methods), "methods")


# ----- redundancy ------------------------------------------------------------------------------
@dataclass
class Redundancy:
    """Per checked circuit edge: the normalized faithfulness lost by removing it alone and by
    removing it after its siblings (the other circuit edges into the same node) are gone."""

    edges: list[str]
    alone: list[float]
    with_siblings: list[float]
    n_siblings: list[int]
    tol: float = 0.02
    flagged: list[str] = field(default_factory=list)

    def sentences(self) -> list[str]:
        if not self.edges:
            return ["No circuit edge has siblings to check for redundancy."]
        if not self.flagged:
            return [f"No redundancy found: none of the {len(self.edges)} checked edges matters "
                    f"only once its siblings are removed."]
        out = []
        for e in self.flagged:
            i = self.edges.index(e)
            out.append(f"Edge {e} looks redundant: removing it alone changes faithfulness by "
                       f"{self.alone[i]:+.3f}, but by {self.with_siblings[i]:+.3f} once its "
                       f"{self.n_siblings[i]} sibling edge(s) are removed; ablating it alone "
                       "understates its role.")
        return out

    def as_dict(self) -> dict:
        return {"edges": self.edges, "alone": self.alone, "with_siblings": self.with_siblings,
                "n_siblings": self.n_siblings, "tol": self.tol, "flagged": self.flagged}


def redundancy(problem: Problem, keep: Keep, scores: Scores | None = None, top: int = 20,
               tol: float = 0.02) -> Redundancy:
    """Check up to ``top`` circuit edges (highest |score| first) for redundancy: an edge whose
    removal alone costs less than ``tol`` of normalized faithfulness but more than ``tol`` (and
    3x as much) once its siblings are removed is flagged. One pass over the data."""
    g = problem.graph
    kept = keep.nonzero()[:, 0].tolist()
    if scores is not None:
        kept.sort(key=lambda i: -abs(float(scores[i])))
    dst = {i: g.edges[i].dst.name for i in kept}
    base = g.mask_from_edges(keep)
    w, r = g.coords
    checked, masks, n_sib = [], [], []
    for i in kept:
        sib = [j for j in kept if j != i and dst[j] == dst[i]]
        if not sib:
            continue
        checked.append(i)
        n_sib.append(len(sib))
        m_alone, m_sib = base.clone(), base.clone()
        m_alone[w[i], r[i]] = 0
        m_sib[w[sib], r[sib]] = 0
        m_both = m_sib.clone()
        m_both[w[i], r[i]] = 0
        masks += [m_alone, m_sib, m_both]
        if len(checked) == top:
            break
    vals = problem.evaluate([base, None, problem.empty_mask(), *masks])
    c, full, empty = vals[:3]
    d = (full - empty) or float("nan")
    alone, joint, flagged = [], [], []
    for k, i in enumerate(checked):
        a = (c - vals[3 + 3 * k]) / d
        j = (vals[4 + 3 * k] - vals[5 + 3 * k]) / d
        alone.append(a)
        joint.append(j)
        if abs(a) < tol and abs(j) > max(tol, 3 * abs(a)):
            flagged.append(g.edges[i].name)
    return Redundancy([g.edges[i].name for i in checked], alone, joint, n_sib, tol, flagged)
