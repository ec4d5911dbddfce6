"""The computations behind discover and evaluate, with no recording in them.

    outcome = find_circuit(problem, method, settings, config, progress, on_scores=save)
    curve, _, _ = faithfulness_curve(problem, scores, budgets)

:func:`find_circuit` scores every edge with the method, selects the circuit (top-n, threshold,
the method's own choice, or the smallest budget reaching the target faithfulness) and evaluates
it, with the faithfulness curve when asked (the default target search evaluates that grid
anyway). ``on_scores`` is called with the scores as soon as they exist, so a caller can keep
them if a later step fails.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field, is_dataclass
from typing import Callable

import torch

from ..circuit import prune_dead, select
from ..evaluation.curves import Curve, faithfulness_curve
from ..evaluation.groundtruth import GroundTruth, evaluate_ground_truth
from ..evaluation.levels import node_curve, node_keep, node_scores, top_nodes
from ..evaluation.neuron_level import neuron_attribution, unit_circuit, unit_curve
from ..graph import Keep, Scores
from ..metrics import Faithfulness
from ..problem import Problem
from ..scoring.base import Method
from .config import DiscoverConfig

__all__ = ["Outcome", "find_circuit", "ground_truth_aucs"]


@dataclass
class Outcome:
    """What the pipeline found for one problem: the scores, the kept edges and their faithfulness
    (and the curve when asked for)."""
    scores: Scores
    keep: Keep
    faithfulness: Faithfulness
    curve: Curve | None
    info: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)


def find_circuit(problem: Problem, method: Method, settings, config: DiscoverConfig,
                 progress: bool = True,
                 on_scores: Callable[[Scores], None] | None = None) -> Outcome:
    """Score, select and evaluate (see the module docstring)."""
    g = problem.graph
    t0 = time.perf_counter()
    settings, auto = default_settings(problem, settings, config.settings)
    output = method.run(problem, settings, progress)
    scores = output.scores.detach().float().cpu()
    if problem.model.device.type == "cuda":
        torch.cuda.synchronize()
    t_score = time.perf_counter()
    if on_scores is not None:
        on_scores(scores)

    if config.level != "edge":
        at = _at_nodes if config.level == "node" else _at_neurons
        keep, faith, curve, info = at(problem, scores, config, progress)
        return Outcome(scores, keep, faith, curve, {**auto, **output.info, **info},
                       {"scoring_s": t_score - t0,
                        "evaluation_s": time.perf_counter() - t_score})
    keep = None
    if output.keep is not None and config.default_search:
        keep = prune_dead(g, output.keep.cpu())
    elif not config.default_search:
        keep = prune_dead(g, select(g, scores, n_edges=config.n_edges,
                                    threshold=config.threshold))
    curve = None
    if config.curve or config.default_search:
        extra = [] if keep is None else [g.mask_from_edges(keep)]
        curve, keeps, extra_values = faithfulness_curve(
            problem, scores, config.budgets, extra=extra, progress=progress)
        if keep is None:  # the smallest budget reaching the target (else everything)
            i = curve.smallest_reaching(config.target)
            i = len(keeps) - 1 if i is None else i
            keep, value = keeps[i], curve.values[i]
        else:
            value = extra_values[0]
        faith = Faithfulness(value, curve.full, curve.empty)
    else:
        faith = problem.faithfulness(g.mask_from_edges(keep))
    t_eval = time.perf_counter()
    return Outcome(scores, keep, faith, curve, {**auto, **output.info},
                   {"scoring_s": t_score - t0, "evaluation_s": t_eval - t_score})


def _at_nodes(problem: Problem, scores: Scores, config: DiscoverConfig,
              progress: bool) -> tuple[Keep, Faithfulness, Curve | None, dict]:
    """The node-level circuit of edge ``scores`` (:mod:`acdc_engine.evaluation.levels`): the top
    ``n_nodes`` nodes, those above the threshold, or the smallest node budget reaching the
    target; its pruned edges, faithfulness and the node-level curve."""
    g = problem.graph
    keep = None
    if not config.default_search:
        kept = top_nodes(g, node_scores(g, scores), config.n_nodes, threshold=config.threshold)
        keep = prune_dead(g, node_keep(g, kept))
    if not (config.curve or config.default_search):
        return keep, problem.faithfulness(g.mask_from_edges(keep)), None, {}
    extra = [] if keep is None else [g.mask_from_edges(keep)]
    curve, keeps, extra_values = node_curve(problem, scores, config.budgets, extra=extra,
                                            progress=progress)
    if keep is None:
        i = curve.smallest_reaching(config.target)
        i = len(keeps) - 1 if i is None else i
        keep, value = keeps[i], curve.values[i]
    else:
        value = extra_values[0]
    return keep, Faithfulness(value, curve.full, curve.empty), curve, {}


def _at_neurons(problem: Problem, scores: Scores, config: DiscoverConfig,
                progress: bool) -> tuple[Keep, Faithfulness, Curve, dict]:
    """The neuron-level circuit (:mod:`acdc_engine.evaluation.neuron_level`): heads and MLP
    neurons scored by attribution patching, the top ``n_nodes`` units (or those above the
    threshold, or the smallest budget reaching the target); the edges among its kept heads and
    the MLPs, its faithfulness, the curve over units, and per layer the neurons kept."""
    g = problem.graph
    ns = neuron_attribution(problem, progress)
    n = config.n_nodes
    if config.threshold is not None:
        n = sum(abs(u[3]) >= config.threshold for u in ns.units(g))
    curve, circuits, extra = unit_curve(problem, ns, config.budgets,
                                        extra=[] if n is None else [n], progress=progress)
    if n is None:
        i = curve.smallest_reaching(config.target)
        i = len(circuits) - 1 if i is None else i
        (kept, keeps), value = circuits[i], curve.values[i]
    else:
        (kept, keeps), value = unit_circuit(g, ns, n), extra[0]
    info = {"neurons_kept": {str(layer): int(k.sum()) for layer, k in keeps.items()},
            "heads_kept": int(sum(kept[w] for w, node in enumerate(g.writers)
                                  if node.kind.name == "ATTN"))}
    keep = prune_dead(g, node_keep(g, kept))
    return keep, Faithfulness(value, curve.full, curve.empty), curve, info


def default_settings(problem: Problem, settings, given: dict | None) -> tuple[object, dict]:
    """``settings`` with the pruning metric defaulted for ``problem`` when the user gave none:
    the task's metric on a model whose output has one entry (KL over one value is always 0),
    else KL divergence (the method's ``"auto"``, resolved here so that the run records the metric
    it pruned by). Returns the settings and ``{"prune_metric": name}`` when it changed them (for
    the run's info)."""
    from ..scoring.acdc import default_prune_metric

    names = {f.name for f in dataclasses.fields(settings)} if is_dataclass(settings) else set()
    if "prune_metric" not in names or "prune_metric" in (given or {}):
        return settings, {}
    choice = default_prune_metric(problem)
    if settings.prune_metric == choice:
        return settings, {}
    return dataclasses.replace(settings, prune_metric=choice), {"prune_metric": choice}


def ground_truth_aucs(problem: Problem, scores: Scores, gt: GroundTruth | None) -> dict | None:
    """Edge and node ROC AUC of ``scores`` against ``gt`` (None without a ground truth; a
    position-aware problem is scored by its edges' scores summed over positions)."""
    if gt is None:
        return None
    g = problem.graph
    if g.positions:
        scores = torch.nansum(scores.view(g.n_groups, -1), 0)
    return evaluate_ground_truth(g.base, scores, gt)
