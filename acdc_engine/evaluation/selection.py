"""Choosing the circuit from edge scores: the selections besides top-n, threshold and target.

    keep = ilp_select(graph, scores, budget=40)          # best connected circuit of <= 40 edges
    keep = positive_first(graph, scores, n_edges=40)     # positive scores first, then the rest
    s = ensemble_scores([eap_scores, ig_scores], "mean") # normalised, then combined
    keep = consistent_edges([keep1, keep2, ...], 0.8)    # kept in >= 80% of bootstrap circuits

Every selection is named (:data:`SELECTIONS`); ``discover(selection=...)`` and ``acdc discover
--selection`` choose one:

``topk``       the top ``n_edges`` by ``|score|`` (:meth:`Circuit.top`), dead ends pruned
``threshold``  every edge with ``|score| >= threshold``, dead ends pruned
``target``     the smallest budget on the grid reaching the target normalized faithfulness
``ilp``        an integer linear program (:func:`ilp_select`): the *connected* circuit of at most
               ``n_edges`` edges with the largest sum of ``|score|``. Every kept edge ``u->v``
               needs a kept edge into ``u`` (unless ``u`` is ``input``) and a kept edge out of
               ``v`` (unless ``v`` is ``logits``): in a DAG that is exactly "every kept edge lies
               on an input-to-logits path of kept edges", so nothing is pruned afterwards, and
               the budget is spent on edges that stay (top-n then pruning can keep fewer)
``positive``   top ``n_edges`` in positive-first order (:func:`positive_order`) of the scores
               oriented by :func:`supporting` (positive = the edge supports the behaviour, as in
               MIB's files): those first, highest first, then the others by ``|score|``; dead
               ends pruned. An ensemble's scores are unsigned, so there it is top-n
``bootstrap``  resample the task's examples with replacement ``bootstrap`` times, rescore and
               select (top ``n_edges`` or the threshold) on each, keep the edges selected in at
               least ``min_frequency`` of the resamples (:func:`consistent_edges`), dead ends
               pruned

An *ensemble* (``method=["eap", "eap-ig"]``) scores with every method, normalises each method's
scores (:func:`normalise`: by the largest ``|score|``, or by rank) and combines them per edge by
``mean``, ``min`` or ``max`` (:func:`ensemble_scores`); any selection then applies to the
combined scores. An ensemble of one method ranks edges exactly as that method does.

:class:`acdc_engine.api.selected.SelectedMethod` (in the API layer: it runs methods) wraps a
method (or an ensemble) so that its output carries the selected circuit;
:func:`~acdc_engine.api.pipeline.find_circuit` then evaluates it as it evaluates a method that
picks its own circuit (ACDC).
"""

from __future__ import annotations


import numpy as np
import torch

from ..circuit import prune_dead, select
from ..errors import AcdcError
from ..graph import Graph, Keep, Scores

__all__ = ["SELECTIONS", "ENSEMBLES", "NORMALISATIONS", "check_selection", "normalise",
           "ensemble_scores", "supporting", "positive_order", "positive_first", "ilp_select",
           "edge_frequency", "consistent_edges", "resample"]

SELECTIONS = ("topk", "threshold", "target", "ilp", "positive", "bootstrap")
"""The named selections (``discover(selection=...)``, ``--selection``); the module docstring
says what each keeps."""
ENSEMBLES = ("mean", "min", "max")
"""How an ensemble combines its methods' normalised scores per edge."""
NORMALISATIONS = ("max", "rank")
"""How each method's ``|scores|`` are put on one scale before combining (:func:`normalise`)."""


def check_selection(selection: str | None, n_edges: int | None, threshold: float | None,
                    ensemble: str = "mean", normalisation: str = "max") -> str:
    """The selection to use (``None``: from ``n_edges``/``threshold`` as before: topk,
    threshold, else target); a bad name or a missing size is a one-line :class:`AcdcError`."""
    if ensemble not in ENSEMBLES:
        raise AcdcError(f"unknown ensemble {ensemble!r} (known: {', '.join(ENSEMBLES)})")
    if normalisation not in NORMALISATIONS:
        raise AcdcError(f"unknown normalisation {normalisation!r} (known: "
                        f"{', '.join(NORMALISATIONS)})")
    if selection is None:
        return "topk" if n_edges is not None else "threshold" if threshold is not None \
            else "target"
    if selection not in SELECTIONS:
        raise AcdcError(f"unknown selection {selection!r} (known: {', '.join(SELECTIONS)})")
    if selection in ("topk", "ilp", "positive") and n_edges is None:
        raise AcdcError(f"selection {selection!r} needs a number of edges (n_edges / --edges)")
    if selection in ("topk", "ilp", "positive", "target") and threshold is not None:
        raise AcdcError(f"selection {selection!r} does not take a threshold")
    if selection == "threshold" and threshold is None:
        raise AcdcError("selection 'threshold' needs a threshold (threshold / --threshold)")
    if selection == "target" and n_edges is not None:
        raise AcdcError("selection 'target' chooses the number of edges itself; drop n_edges")
    if selection == "bootstrap" and (n_edges is None) == (threshold is None):
        raise AcdcError("selection 'bootstrap' needs exactly one of n_edges or threshold (the "
                        "rule applied to every resample)")
    return selection


# ----- ensembles -------------------------------------------------------------------------------
def normalise(scores: Scores, how: str = "max") -> torch.Tensor:
    """``|scores|`` on a common scale in [0, 1]: divided by the largest ``|score|`` (``max``),
    or the rank of ``|score|`` over the number of edges (``rank``: ties share their average
    rank; the largest is 1). NaN (not scored) becomes 0."""
    s = torch.nan_to_num(scores.detach().double().abs().cpu(), nan=0.0)
    if how == "max":
        top = float(s.max()) if s.numel() else 0.0
        return s / top if top > 0 else torch.zeros_like(s)
    if how == "rank":
        from scipy.stats import rankdata

        return torch.from_numpy(rankdata(s.numpy())) / max(1, s.numel())
    raise AcdcError(f"unknown normalisation {how!r} (known: {', '.join(NORMALISATIONS)})")


def ensemble_scores(scores: list[Scores], how: str = "mean", norm: str = "max") -> Scores:
    """Each method's scores normalised (:func:`normalise`), combined per edge by ``how``
    (``mean``, ``min`` or ``max``); float32, one per edge, all >= 0."""
    if not scores:
        raise AcdcError("an ensemble needs at least one method's scores")
    shapes = {tuple(s.shape) for s in scores}
    if len(shapes) != 1:
        raise AcdcError(f"the ensemble's scores differ in shape: {sorted(shapes)}")
    stack = torch.stack([normalise(s, norm) for s in scores])
    if how == "mean":
        out = stack.mean(0)
    elif how == "min":
        out = stack.min(0).values
    elif how == "max":
        out = stack.max(0).values
    else:
        raise AcdcError(f"unknown ensemble {how!r} (known: {', '.join(ENSEMBLES)})")
    return out.float()


# ----- positive first --------------------------------------------------------------------------
def positive_order(scores: Scores) -> torch.Tensor:
    """Edge indices, positive scores first (highest first), then the others by ``|score|``
    (largest first), NaN last; ties keep graph order."""
    s = scores.detach().double().cpu()
    pos = s > 0
    key = torch.where(pos, s, s.abs())
    key = torch.nan_to_num(key, nan=-1.0)  # NaN after every scored edge
    group = torch.where(pos, 0, torch.where(torch.isnan(s), 2, 1))
    idx = np.lexsort((np.arange(len(s)), -key.numpy(), group.numpy()))
    return torch.from_numpy(idx)


def supporting(scores: Scores, higher_is_better: bool = True) -> Scores:
    """Scores oriented so that positive means "the edge supports the behaviour" (MIB's sign:
    its EAP-IG scores are changes of a loss). The engine's scores are ``m(without e) -
    m(full)`` of the task's metric, so for a metric where higher is better (logit_diff) an
    edge that supports the behaviour has a negative score: those are negated."""
    return -scores if higher_is_better else scores


def positive_first(graph: Graph, scores: Scores, n_edges: int) -> Keep:
    """The first ``n_edges`` edges in :func:`positive_order`, dead ends pruned."""
    _check(graph, scores, n_edges)
    keep = torch.zeros(graph.n_edges, dtype=torch.bool)
    keep[positive_order(scores)[:n_edges]] = True
    return prune_dead(graph, keep)


def _check(graph: Graph, scores: Scores, n_edges: int) -> None:
    if scores.shape != (graph.n_edges,):
        raise AcdcError(f"expected {graph.n_edges} scores, got {tuple(scores.shape)}")
    if not isinstance(n_edges, int) or not 0 <= n_edges <= graph.n_edges:
        raise AcdcError(f"n_edges must be between 0 and {graph.n_edges}, got {n_edges!r}")


# ----- integer linear program ------------------------------------------------------------------
def ilp_select(graph: Graph, scores: Scores, budget: int, time_limit: float | None = 60.0,
               info: dict | None = None) -> Keep:
    """The connected circuit of at most ``budget`` edges maximising the sum of ``|score|``
    (``scipy.optimize.milp``, HiGHS).

    Variables: ``x_e`` in {0, 1} per edge; per node ``y_v``, ``z_v`` in [0, 1] ("v has a kept
    edge in", "... out"; ``y_input = z_logits = 1``). Constraints: ``sum x <= budget``;
    ``x_{u->v} <= y_u``, ``y_u <= sum of x over the edges into u``; ``x_{u->v} <= z_v``,
    ``z_v <= sum of x over the edges out of v``. That is "a kept edge u->v needs a kept edge
    into u (unless u is the input) and one out of v (unless v is the logits)", written with
    about six nonzeros per edge. A solver stopped by ``time_limit`` seconds returns its best
    circuit, or the top-``budget`` circuit (pruned) when that is better; ``info`` (a dict)
    receives ``ilp_optimal``, ``ilp_objective`` and ``ilp_fallback``."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix

    _check(graph, scores, budget)
    n, n_nodes = graph.n_edges, len(graph.nodes)
    w = torch.nan_to_num(scores.detach().double().abs().cpu(), nan=0.0).numpy()
    src = graph.coords[0].numpy()
    dst = np.asarray(graph.slot_node)[graph.coords[1].numpy()]
    e = np.arange(n)
    v = np.arange(n_nodes)
    ys, zs = n, n + n_nodes  # where the y and z variables start
    rows = np.concatenate([e, e, n + e, n + e,                       # x <= y_src, x <= z_dst
                           2 * n + v, 2 * n + dst,                    # y_v <= sum into v
                           2 * n + n_nodes + v, 2 * n + n_nodes + src,  # z_v <= sum out of v
                           np.full(n, 2 * n + 2 * n_nodes)])          # the budget
    cols = np.concatenate([e, ys + src, e, zs + dst, ys + v, e, zs + v, e, e])
    vals = np.concatenate([np.ones(n), -np.ones(n), np.ones(n), -np.ones(n), np.ones(n_nodes),
                           -np.ones(n), np.ones(n_nodes), -np.ones(n), np.ones(n)])
    n_rows = 2 * n + 2 * n_nodes + 1
    a = coo_matrix((vals, (rows, cols)), shape=(n_rows, n + 2 * n_nodes)).tocsr()
    upper = np.zeros(n_rows)
    upper[2 * n] = upper[2 * n + 2 * n_nodes - 1] = np.inf  # the input's y, the logits' z
    upper[-1] = budget
    lo, hi = np.zeros(n + 2 * n_nodes), np.ones(n + 2 * n_nodes)
    lo[ys] = lo[zs + n_nodes - 1] = 1.0  # y_input = z_logits = 1
    options = {"disp": False}
    if time_limit is not None:
        options["time_limit"] = float(time_limit)
    res = milp(np.concatenate([-w, np.zeros(2 * n_nodes)]),
               integrality=np.concatenate([np.ones(n), np.zeros(2 * n_nodes)]),
               bounds=Bounds(lo, hi), constraints=LinearConstraint(a, -np.inf, upper),
               options=options)
    optimal = res.status == 0
    keep = torch.zeros(n, dtype=torch.bool) if res.x is None else \
        prune_dead(graph, torch.from_numpy(res.x[:n] > 0.5))  # a no-op on an optimal solution
    fallback = False
    if not optimal:  # never worse than top-n then pruning
        top = prune_dead(graph, select(graph, scores, n_edges=budget))
        if w[top.numpy()].sum() > w[keep.numpy()].sum():
            keep, fallback = top, True
    if info is not None:
        info.update(ilp_optimal=optimal, ilp_objective=float(w[keep.numpy()].sum()),
                    ilp_fallback=fallback)
    return keep


# ----- bootstrap-consistent edges --------------------------------------------------------------
def edge_frequency(keeps: list[Keep]) -> torch.Tensor:
    """Per edge, the fraction of the circuits ``keeps`` that keep it (float64)."""
    if not keeps:
        raise AcdcError("no circuits to count edges over")
    return torch.stack([k.to(torch.float64) for k in keeps]).mean(0)


def consistent_edges(keeps: list[Keep], min_frequency: float = 0.5) -> Keep:
    """The edges kept in at least ``min_frequency`` of the circuits ``keeps`` (a small
    tolerance absorbs rounding: 4 of 5 circuits is 0.8)."""
    if not 0 < min_frequency <= 1:
        raise AcdcError(f"min_frequency must be in (0, 1], got {min_frequency!r}")
    return edge_frequency(keeps) >= min_frequency - 1e-9


def resample(problem, seed: int = 0):
    """The problem on a bootstrap resample of its examples: as many examples, drawn with
    replacement (seeded); the ablated activations cached so far are resampled with them.
    A position-aware problem keeps its positions. (The evidence tools' ``subsample`` draws
    without replacement, for rediscovery on halves; a bootstrap needs replacement.)"""
    from ..problem import Problem

    n = problem.n_examples
    draw = torch.randint(0, n, (n,), generator=torch.Generator().manual_seed(seed)).tolist()
    sizes = [len(b) for b in problem.batches]
    starts = np.cumsum([0, *sizes])
    batches, abl = [], {}
    for i, b in enumerate(problem.batches):
        idx = [j - int(starts[i]) for j in draw if starts[i] <= j < starts[i + 1]]
        if not idx:
            continue
        batches.append(b.select(idx))
        a = problem._ablated.get(i)
        if a is not None and a.shape[1] > 1:
            abl[len(batches) - 1] = a.index_select(1, torch.tensor(idx, device=a.device))
    out = Problem(problem.model, batches, problem.metric, problem.ablation, problem.cache,
                  problem.positions)
    out._ablated = abl
    return out
