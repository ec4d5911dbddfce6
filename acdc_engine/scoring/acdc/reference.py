"""The naive reference: ACDC with one full patched forward over the dataset per tested edge.

Slow and obviously right; kept to test the fast engine (identical decisions) and to measure
it against (benchmarks/acdc_cost.py). It is also how ACDC runs on a position-aware graph
(every edge split by position group: the dense masks are ``[W, R, G]``), which the incremental
engine does not handle: one patched forward per tested split edge, so keep such runs to small
models or few groups.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ...errors import AcdcError
from ...patching import Prefix
from ...problem import Problem
from ...progress import progress_bar
from .checkpoints import fingerprint, load_checkpoint, run_settings
from .config import AcdcConfig
from .order import Topology, damage_fn, visit_order
from .pruning import check_separates
from .result import PruneResult, check_outcome

__all__ = ["acdc_naive"]


@torch.no_grad()
def acdc_naive(problem: Problem, config: AcdcConfig) -> PruneResult:
    """ACDC by the definition (:mod:`.order`): each test is ``problem.evaluate([mask])``.

    Reads ``config``'s tau, abs_value, max_tested (stops after that many tests made by this
    call) and progress. ``config.checkpoint``, when set, is a checkpoint written by
    :func:`acdc` to start from (read only), e.g. to compare decisions deep into a run without
    repeating its start. Plain ACDC only (no ``guide``).
    """
    if config.guide is not None:
        raise AcdcError("the naive reference implements plain ACDC only (config.guide is set)")
    if problem.graph.positions and config.checkpoint is not None:
        raise AcdcError("ACDC on a position-aware graph does not checkpoint; run it without "
                        "a checkpoint")
    t0 = time.perf_counter()
    problem = problem.with_metric(problem.metric)  # batches carry the clean logits if needed
    g, model = problem.graph, problem.model
    tau, max_tested = float(config.tau), config.max_tested
    at = [g.dense_index(e) for e in range(g.n_edges)]  # where each edge sits in a dense mask
    damage = damage_fn(problem.metric, config.abs_value)
    mask = g.full_mask(1.0, device=model.device, dtype=model.dtype)

    # position-aware graphs run this loop for real: each test starts at the first layer with a
    # removed edge, from the clean run's residual stream there (exact; patching.Prefix)
    tests = problem.with_context(prefix=Prefix(model.adapter)) if g.positions else problem

    def m(mask) -> float:
        return tests.evaluate([mask])[0]

    topo = Topology(g)
    keep = np.ones(g.dense_shape, dtype=bool)
    scores = torch.zeros(g.n_edges)
    tested = torch.zeros(g.n_edges, dtype=torch.bool)
    decisions, damages = [], []
    order = visit_order(g)
    start = 0
    if config.checkpoint is not None:
        path = Path(config.checkpoint)
        state = load_checkpoint(path, fingerprint(problem, run_settings(problem, config)), g)
        if state is None:
            raise AcdcError(f"no checkpoint at {path}")
        keep[:] = state.keep
        mask = torch.from_numpy(keep.astype(np.float32)).to(mask)
        scores, tested = state.scores.clone(), state.tested.clone()
        decisions, damages = state.decisions, state.damages
        cur, full, start = state.cur, state.full, state.position
    else:
        check_separates(problem)  # as the fast driver does, before any pruning
        cur = full = m(mask)
    n_start = len(decisions)
    n_eval = 0
    nodes_done = start
    complete = True
    for node, edges in progress_bar(order[start:], desc="acdc (naive)", enabled=config.progress):
        alive = topo.alive(topo.adjacency(keep if keep.ndim == 2 else keep.any(-1)))
        if not alive[node]:
            for e in edges:
                mask[at[e]] = 0
                keep[at[e]] = False
            nodes_done += 1
            continue
        for e in edges:
            if max_tested is not None and len(decisions) - n_start >= max_tested:
                complete = False
                break
            mask[at[e]] = 0
            new = m(mask)
            n_eval += 1
            scores[e], tested[e] = new - cur, True
            damages.append(damage(new, cur))
            if damages[-1] < tau:
                cur = new
                keep[at[e]] = False
                decisions.append((e, True))
            else:
                mask[at[e]] = 1
                decisions.append((e, False))
        if not complete:
            break
        nodes_done += 1
    keep_e = g.from_dense(torch.from_numpy(keep))
    result = PruneResult(keep_e, scores, tested, decisions, full, cur, tau, n_eval, 0,
                         time.perf_counter() - t0, nodes_done, complete)
    check_outcome(result, damages, g, stacklevel=4)  # the caller (under no_grad's wrapper)
    return result
