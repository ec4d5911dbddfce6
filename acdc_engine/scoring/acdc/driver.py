"""Fast ACDC (:func:`acdc`): the driver that takes ACDC's decisions on top of the engine.

Plain ACDC tests each node's edges in the visit order (:mod:`.order`), speculatively: the next
``k`` edges of a node are evaluated in one forward with the candidates stacked, candidate
``j`` removing edges ``1..j``. Decisions are then taken in order; candidate ``j`` is exactly
the sequential algorithm's test as long as edges ``1..j-1`` were removed, and at the first
kept edge the rest of the chunk is discarded and re-evaluated from the new state. ``k`` grows
while removals are accepted and shrinks after a rejection.

Guided ACDC (``config.guide`` set) orders each node's edges by attribution estimate:

1. edges with ``|estimate| >= keep_factor * tau`` are kept without a test (None: test all);
2. the least important edges (ascending ``|estimate|``) whose estimates sum to less than
   ``group_fraction * tau`` are removed together if one exact test shows the group's damage
   is below tau (else the first half of the group is tried, and so on);
3. the rest, in ascending ``|estimate|``, get ACDC's exact per-edge test.

Every removal is verified by exact patching (a group as a whole); only keeping can be decided
by the estimate. Scores: the measured change for single tests, the estimate for edges decided
in a group or kept untested.

Checkpoints (:mod:`.checkpoints`) are written every ``checkpoint_every`` nodes, after the last
node and when the run is interrupted (Ctrl-C or any exception), at the last finished node.
In a job of several ranks (``problem.ranks``) every rank takes the same decisions from the
same all-reduced values; rank 0 alone writes the checkpoint and reads it for every rank.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...errors import AcdcError
from ...problem import Problem
from ...progress import progress_bar
from .checkpoints import Checkpoint, fingerprint, load_checkpoint, run_settings, save_checkpoint
from .config import AcdcConfig, NodeDone
from .engine import Engine
from .order import damage_fn, visit_order
from .pruning import check_separates
from .result import PruneResult, check_outcome

__all__ = ["acdc"]


def acdc(problem: Problem, config: AcdcConfig) -> PruneResult:
    """ACDC on ``problem`` (its metric is the pruning metric) with ``config``; the same answer
    as :func:`~.reference.acdc_naive`. With ``config.guide``: guided ACDC (module docstring);
    its result's ``info`` adds ``group_removals`` and ``kept_untested``."""
    guide = config.guide
    if guide is not None and guide.estimates.shape != (problem.graph.n_edges,):
        raise AcdcError(f"expected {problem.graph.n_edges} estimates, got "
                        f"{tuple(guide.estimates.shape)}")
    return _Pruner(problem, config).run()


@dataclass
class _Snapshot:
    """The state at a node boundary (decisions and damages only grow: kept as lengths)."""

    position: int
    keep: np.ndarray
    scores: torch.Tensor
    tested: torch.Tensor
    n_decisions: int
    n_damages: int
    cur: float
    full: float
    seconds: float
    evaluations: tuple[int, int]


class _Pruner:
    """One run of :func:`acdc`: the decisions, on top of an :class:`Engine`."""

    def __init__(self, problem: Problem, config: AcdcConfig):
        self.problem = problem.with_metric(problem.metric)  # clean logits if the metric needs
        self.config, self.g = config, problem.graph
        self.tau = float(config.tau)
        self.damage = damage_fn(problem.metric, config.abs_value)
        self.checkpoint = Path(config.checkpoint) if config.checkpoint else None
        guide = config.guide
        self.estimates = None if guide is None else guide.estimates.detach().float().cpu()
        self.info_groups = 0  # accepted group removals (guided)

    def run(self) -> PruneResult:
        t0 = time.perf_counter()
        g, cfg = self.g, self.config
        self.keep = np.ones((g.n_writers, g.n_readers), dtype=bool)
        self.scores = torch.zeros(g.n_edges)
        self.tested = torch.zeros(g.n_edges, dtype=torch.bool)
        self.decisions: list[tuple[int, bool]] = []
        self.damages: list[float] = []
        self.w_of, self.r_of = (t.tolist() for t in g.coords)
        order = visit_order(g)
        self.fingerprint = None
        state = None
        if self.checkpoint:
            self.fingerprint = fingerprint(self.problem, run_settings(self.problem, cfg))
            state = self._load(g)
        eng = self.engine = Engine(self.problem, self.keep, cfg.mem_budget_mb * 2**20)
        start, prior_s, prior_evals = 0, 0.0, (0, 0)
        if state is not None:
            self.keep[:] = state.keep
            self.scores, self.tested = state.scores, state.tested
            self.decisions, self.damages = state.decisions, state.damages
            self.cur, self.full = state.cur, state.full
            start, prior_s, prior_evals = state.position, state.seconds, state.evaluations
        else:  # the full model's metric, computed as the reference does; refuse a pruning
            # metric that cannot tell the full model from the empty circuit
            self.cur = self.full = check_separates(self.problem)[0]
        self.decisions_at_start = len(self.decisions)
        eng.evaluations, eng.node_evals = prior_evals
        if start < len(order):
            eng.reset()
        self.k = 1
        complete = True
        boundary = self._snapshot(start, prior_s, t0)
        pos = start
        try:
            for pos in progress_bar(range(start, len(order)), desc=cfg.label,
                                    enabled=cfg.progress, total=len(order) - start):
                node, edges = order[pos]
                if not self._node(node, edges):
                    complete = False
                    break
                boundary = self._snapshot(pos + 1, prior_s, t0)
                if self.checkpoint and ((pos + 1 - start) % cfg.checkpoint_every == 0
                                        or pos + 1 == len(order)):
                    self._save(boundary)
                if cfg.callback is not None:
                    cfg.callback(NodeDone(pos + 1, len(order), g.nodes[node].name,
                                          len(self.decisions), int(self.keep.sum())))
        except BaseException:
            if self.checkpoint:
                self._save(boundary)
            raise
        keep_e = torch.from_numpy(self.keep & g.valid.numpy())[g.coords]
        nodes_done = boundary.position if complete else pos
        result = PruneResult(keep_e, self.scores, self.tested, self.decisions, self.full,
                             self.cur, self.tau, eng.evaluations, eng.node_evals,
                             prior_s + time.perf_counter() - t0, nodes_done, complete,
                             info={"resumed_from": start} if start else {})
        result.info["low_rank_evaluations"] = eng.low_rank_evals  # this call's (engine.py)
        check_outcome(result, self.damages, g, stacklevel=4)  # the caller of acdc()
        if self.estimates is not None:
            result.info["group_removals"] = self.info_groups
            result.info["kept_untested"] = int((~result.tested & result.keep).sum())
        return result

    def _snapshot(self, position: int, prior_s: float, t0: float) -> _Snapshot:
        return _Snapshot(position, self.keep.copy(), self.scores.clone(), self.tested.clone(),
                         len(self.decisions), len(self.damages), self.cur, self.full,
                         prior_s + time.perf_counter() - t0,
                         (self.engine.evaluations, self.engine.node_evals))

    def _load(self, g):
        """The checkpoint (None if there is none), read by rank 0 and sent to every rank; an
        error reading it is raised on every rank."""
        ranks = self.problem.ranks
        got = None
        if ranks.main:
            try:
                got = ("ok", load_checkpoint(self.checkpoint, self.fingerprint, g))
            except AcdcError as e:
                got = ("error", str(e))
        got = ranks.broadcast(got)
        if got[0] == "error":
            raise AcdcError(got[1])
        return got[1]

    def _save(self, snap: _Snapshot) -> None:
        if not self.problem.ranks.main:  # rank 0 alone writes
            return
        ckpt = Checkpoint(snap.position, snap.keep, snap.scores, snap.tested,
                          self.decisions[: snap.n_decisions], self.damages[: snap.n_damages],
                          snap.cur, snap.full, snap.seconds, snap.evaluations)
        try:
            save_checkpoint(self.checkpoint, ckpt, self.fingerprint)
        except AcdcError as e:  # (a full disk): the run's work matters more than its checkpoint
            print(f"warning: {e}; going on without checkpoints", file=sys.stderr)
            self.checkpoint = None

    def _remove(self, e: int) -> None:
        self.keep[self.w_of[e], self.r_of[e]] = False

    def _budget_left(self) -> int | None:
        if self.config.max_tested is None:
            return None
        return self.config.max_tested - (len(self.decisions) - self.decisions_at_start)

    def _node(self, node: int, edges: list[int]) -> bool:
        """Decide every edge into ``node``; False when ``max_tested`` stopped the run."""
        eng = self.engine
        # dead: nothing it does can reach the logits
        if not eng.begin_node(node, expected=len(edges)):
            for e in edges:
                self._remove(e)
            return True
        try:
            if self.estimates is None:
                return self._sequential(edges)
            return self._guided(edges)
        finally:
            eng.end_node()

    def _sequential(self, edges: list[int]) -> bool:
        """ACDC's per-edge rule over ``edges``, ``k`` speculative candidates per forward."""
        eng = self.engine
        speculate = self.config.speculate
        i = 0
        cap = min(speculate, eng.max_candidates())
        while i < len(edges):
            left = self._budget_left()
            if left is not None and left <= 0:
                return False
            k = min(self.k, cap, len(edges) - i, left if left is not None else len(edges))
            chunk = edges[i : i + k]
            values = eng.evaluate([chunk[: j + 1] for j in range(k)])
            accepted = -1
            for j, e in enumerate(chunk):
                new = values[j]
                dmg = self.damage(new, self.cur)
                self.scores[e], self.tested[e] = new - self.cur, True
                self.damages.append(dmg)
                if dmg < self.tau:
                    self.cur = new
                    self._remove(e)
                    self.decisions.append((e, True))
                    accepted = j
                else:
                    self.decisions.append((e, False))
                    break
            n_done = j + 1
            if accepted >= 0:
                eng.commit(accepted)
            i += n_done
            self.k = min(2 * k, speculate) if accepted == k - 1 else max(1, accepted + 1)
        return True

    def _guided(self, edges: list[int]) -> bool:
        """Guided ACDC's rule over ``edges`` (module docstring)."""
        eng, guide = self.engine, self.config.guide
        est = self.estimates
        bound = None if guide.keep_factor is None else guide.keep_factor * abs(self.tau)
        order = sorted(edges, key=lambda e: (abs(float(est[e])), edges.index(e)))
        testable = [e for e in order if bound is None or abs(float(est[e])) < bound]
        for e in order[len(testable):]:  # estimated too important to test: kept
            self.scores[e] = float(est[e])
        # one group test: the least important edges whose estimates sum below a fraction of tau
        budget, n_group = guide.group_fraction * abs(self.tau), 0
        acc = 0.0
        for e in testable:
            acc += abs(float(est[e]))
            if acc >= budget:
                break
            n_group += 1
        while n_group >= 2:
            group = testable[:n_group]
            left = self._budget_left()
            if left is not None and left <= 0:
                return False
            (new,) = eng.evaluate([group])
            dmg = self.damage(new, self.cur)
            self.damages.append(dmg)
            if dmg < self.tau:
                self.cur = new
                for e in group:
                    self._remove(e)
                    self.scores[e] = float(est[e])
                    self.decisions.append((e, True))
                eng.commit(0)
                testable = testable[n_group:]
                self.info_groups += 1
                break
            n_group //= 2  # the estimates were too optimistic: try the first half
        return self._sequential(testable)
