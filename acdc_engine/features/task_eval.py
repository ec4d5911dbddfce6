"""Faithfulness and completeness of feature circuits, and the held-out split.

    f = node_faithfulness(problem, transcoders, circuit.nodes)   # metrics's Faithfulness
    curve, complete = feature_curves(problem, transcoders, scores)
    train, held = split_problem(problem, 0.25)

A circuit of feature nodes is run with every node it keeps computed as the model computes it
(a kept feature is encoded from what its layer reads in this run; a kept error is the clean
run's) and every other node set to its source (the corrupted prompt's activation, zero or the
mean: :data:`~acdc_engine.features.task_circuit.SOURCES`). Faithfulness is normalized as the
component level's is, ``(m(C) - m(empty)) / (m(full) - m(empty))``: the full circuit gives 1
and the empty one 0 (up to float rounding). Completeness is the faithfulness of the circuit's
complement (every node but the circuit's kept), which is near 0 for a complete circuit.

The curves use node budgets, as percentages of every node (``Curve.unit == "nodes"``): the
top nodes by ``|score|`` at each budget.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..errors import AcdcError
from ..evaluation.curves import BUDGETS, Curve
from ..metrics import Faithfulness
from ..patching import ReadOut
from .feature_circuit import parse_feature_node
from .task_circuit import NodeScores, _means, batch_runs

__all__ = ["node_faithfulness", "feature_curves", "split_problem", "keep_masks",
           "evaluate_keeps"]


def split_problem(problem, held_out: float, seed: int = 0):
    """``(train, held-out)`` problems: a ``held_out`` fraction (0 < f < 1) of the examples,
    chosen at random with ``seed``, in the second."""
    if not 0 < held_out < 1:
        raise AcdcError(f"the held-out fraction must be between 0 and 1, got {held_out}")
    n = problem.n_examples
    n_held = max(1, int(round(n * held_out)))
    if n_held >= n:
        raise AcdcError(f"{n} examples cannot be split {1 - held_out:.0%}/{held_out:.0%}: "
                        "use more examples")
    g = torch.Generator().manual_seed(seed)
    held = set(torch.randperm(n, generator=g)[:n_held].tolist())
    parts: tuple[list, list] = ([], [])
    start = 0
    for b in problem.batches:
        rows = range(start, start + len(b))
        for k, side in enumerate(parts):
            pick = [i - start for i in rows if (i in held) == bool(k)]
            if pick:
                side.append(b if len(pick) == len(b) else b.select(pick))
        start += len(b)
    return (replace(problem, batches=parts[0], _ablated={}),
            replace(problem, batches=parts[1], _ablated={}))


def keep_masks(transcoders, kept, per_position: bool = False, n_pos: int | None = None):
    """Per layer, bool keep flags for features ([n] or [P, n]) and the error ([] or [P]) of
    the kept node names."""
    L = transcoders.n_layers
    shape = (lambda n: (n_pos, n)) if per_position else (lambda n: (n,))
    fa = [torch.zeros(shape(transcoders.decoder(li, li).shape[0]), dtype=torch.bool)
          for li in range(L)]
    fe = [torch.zeros(shape(1)[:-1] or (), dtype=torch.bool) for _ in range(L)]
    for name in kept:
        layer, feat, pos = parse_feature_node(name)
        if (pos is not None) != per_position:
            raise AcdcError(f"node {name!r} does not fit a "
                            f"{'per-position' if per_position else 'position-free'} circuit")
        if feat is None:
            if pos is None:
                fe[layer] = torch.tensor(True)
            else:
                fe[layer][pos] = True
        else:
            fa[layer][(feat,) if pos is None else (pos, feat)] = True
    return fa, fe


@torch.no_grad()
def evaluate_keeps(problem, transcoders, keeps, source: str = "corrupted",
                   per_position: bool = False) -> list[float]:
    """Mean metric over the problem's examples for each keep set (node names; None: every
    node kept)."""
    from .splice import spliced_run

    means = _means(problem, transcoders) if source == "mean" else None
    n_pos = problem.batches[0].clean.shape[1] if per_position else None
    masks = [None if k is None else keep_masks(transcoders, k, per_position, n_pos)
             for k in keeps]
    totals = [0.0] * len(keeps)
    for batch in problem.batches:
        runs = batch_runs(problem, transcoders, batch, source, means)
        for i, m in enumerate(masks):
            if m is None:
                errs, edit = runs.clean_err, None
            else:
                fa, fe = m
                dev = runs.clean_acts[0].device
                errs = [torch.where(fe[j].to(dev)[..., None], runs.clean_err[j],
                                    runs.src_err[j]) for j in range(len(fe))]

                def edit(j, acts, fa=fa, dev=dev, runs=runs):
                    return torch.where(fa[j].to(dev), acts, runs.src_acts[j].to(acts.dtype))
            out = spliced_run(problem.model.adapter, batch.clean, transcoders, errors=errs,
                              edit=edit, readout=ReadOut.of(batch))
            totals[i] += float(problem.metric.score(out.logits, batch).sum())
    return [t / problem.n_examples for t in totals]


def node_faithfulness(problem, transcoders, kept, source: str = "corrupted",
                      per_position: bool = False) -> Faithfulness:
    """The circuit keeping nodes ``kept`` (names), the full model and the empty circuit's
    mean metrics (:class:`~acdc_engine.metrics.Faithfulness`; ``.normalized``)."""
    c, full, empty = evaluate_keeps(problem, transcoders, [list(kept), None, []], source,
                                    per_position)
    return Faithfulness(c, full, empty)


def feature_curves(problem, transcoders, scores: NodeScores,
                   budgets=BUDGETS) -> tuple[Curve, Curve]:
    """The faithfulness curve (the top nodes by ``|score|`` at each budget, % of every node)
    and the completeness curve (the same circuits' complements), on ``problem``."""
    names, vals = scores.names_scores()
    order = vals.abs().argsort(descending=True, stable=True).tolist()
    total = len(names)
    sizes = [min(total, max(0, int(round(total * b / 100)))) for b in budgets]
    tops = [[names[i] for i in order[:k]] for k in sizes]
    comps = [[names[i] for i in order[k:]] for k in sizes]
    values = evaluate_keeps(problem, transcoders, [None, []] + tops + comps, scores.source,
                            scores.per_position)
    full, empty = values[0], values[1]
    n = len(sizes)
    curve = Curve(tuple(budgets), tuple(sizes), total, tuple(values[2:2 + n]), full, empty,
                  "nodes")
    complete = Curve(tuple(budgets), tuple(sizes), total, tuple(values[2 + n:]), full, empty,
                     "nodes")
    return curve, complete
