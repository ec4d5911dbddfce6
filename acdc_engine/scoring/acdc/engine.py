"""The incremental engine: evaluates candidate removals of edges into one node exactly, re-running
only what they can change.

    * Nothing upstream of ``v`` changes while edges into ``v`` are tested, and every edge
      downstream of ``v`` is already decided. So the engine keeps the current outputs of every
      writer, precomputes once per node each downstream reader's input from the writers that
      cannot change, and per candidate re-runs only ``v`` and the nodes on a path of kept edges
      from ``v`` to the logits (other downstream nodes cannot be affected, or cannot affect the
      metric). The logits read only the last position, unless a batch reads other positions
      (then every position downstream is computed and the logits gathered at the read ones).
    * A re-run node whose output reaches the logits only through MLPs, queries and the logits
      (never a key or a value) is computed at the last position alone (queries only where the
      head kernel allows it).
    * Candidates are stacked on the batch axis: :meth:`Engine.evaluate` takes several removal
      sets at once (the driver speculates), :meth:`Engine.commit` makes one of them current.
    * Heads are re-run one by one through ``adapter.attn_heads_subset`` (a family's declared
      fast kernel after a start-up check against ``attn_heads``; else the generic one).
    * The metric is prepared once per batch (:meth:`Metric.stacked`): KL divergence keeps the
      clean distribution's side, and a metric that reads a few logit columns (logit
      difference) gets only those, unembedded through the adapter's ``unembed_columns(x,
      columns)`` when it has one (else the full unembedding, then the columns).
    * A full-vocabulary metric reads the logits from one reused buffer (``unembed_into``), in
      groups of ``SCORE_ROWS`` rows; when every re-run writer that reaches the logits directly
      is a head, the candidates are unembedded at low rank (:mod:`.kernel`; how many of them
      in the GPT-2-small benchmark: docs/benchmarks.md).
    * While only a head's query edges are tested, the candidates' last queries go through one
      attention over its current keys and values as query rows (when the kernel accepts them,
      :func:`.kernel.accepts_query_rows`).

Up to floating-point summation order the tested masks and metric values are those of the
reference (:mod:`.reference`), so the decisions are the same: do not change the order of any
arithmetic here without running the fast-equals-naive tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ...graph import NodeKind
from ...metrics import Stacked
from ...patching import PatchPlan, writer_outputs
from ...problem import Problem
from ...tasks import Batch
from .kernel import LowRankUnembed, Unembedding, accepts_query_rows, head_kernel
from .plan import HeadsStep, Mixer, NodePlan, Planner
from .removals import SlotRemovals, slot_removals

__all__ = ["Engine"]

SCORE_ROWS = 128
"""Rows of logits (candidates x examples x read positions) handed to the metric at once."""

@dataclass
class Candidates:
    """One batch's results of the last evaluation, for :meth:`Engine.commit`."""

    rerun_out: torch.Tensor | None  # [n_rerun, c, b, p, d] re-run writers (None: v is the logits)
    inputs: dict[int, torch.Tensor]  # slot of v -> [c, b, p', d] v's candidate inputs


@dataclass
class BatchState:
    batch: Batch
    abl: torch.Tensor | None  # [W, b|1, p, d] ablated writer outputs
    out: torch.Tensor | None = None  # [W, b, p, d] writer outputs under the current mask
    # [n_R, b|1, p, d] the re-run readers' inputs from the writers that cannot change
    fixed_part: torch.Tensor | None = None
    cur_in: dict = field(default_factory=dict)  # slot of v -> [b, p, d] current input
    cand: Candidates | None = None  # the last evaluation
    scorer: Stacked | None = None  # the metric prepared for this batch's stacked candidates
    low: LowRankUnembed | None = None  # this node's low-rank unembedding, when it applies


class Engine:
    """Evaluates candidate removal sets of edges into one node, re-running only what changes.

    ``problem`` must carry what its metric needs (``problem.with_metric``); ``keep`` ([W, R]
    numpy bool) is the caller's current mask, shared: downstream columns must not change while
    a node is being tested (they never do in ACDC's order). ``mem_budget`` is in bytes.

    Per node: :meth:`begin_node`, then any number of :meth:`evaluate` / :meth:`commit`, then
    :meth:`end_node`. :meth:`reset` recomputes the writer outputs from ``keep``.
    """

    def __init__(self, problem: Problem, keep: np.ndarray, mem_budget: float = 2**29):
        model = problem.model
        self.adapter, self.g, self.metric = model.adapter, problem.graph, problem.metric
        self.keep = keep
        self.dev, self.dtype = model.device, model.dtype
        self.n = problem.n_examples  # this rank's (memory); the mean divides by every rank's
        self.ranks = problem.ranks
        self.n_total = int(self.ranks.sum_floats([self.n])[0])
        self.states = [BatchState(b, problem.ablated(i), scorer=self.metric.stacked(b))
                       for i, b in enumerate(problem.batches)]
        self.low_rank_evals = 0  # candidates unembedded at low rank
        self.heads_fn, self.last_query_ok = head_kernel(model)
        self.multi_query_ok = accepts_query_rows(model, self.heads_fn, self.last_query_ok)
        self.unembed = Unembedding(self.adapter, self.heads_fn, self.dev, self.dtype)
        self.unembed_columns = getattr(self.adapter, "unembed_columns", None)
        # a batch that reads other positions than the last: the logits read every position
        self.all_pos = not all(b.last_only for b in problem.batches)
        self.planner = Planner(self.g, self.last_query_ok, self.dev, self.dtype, self.all_pos)
        self.mem_budget = mem_budget
        self.valid = self.g.valid.numpy()
        self.bias = self._slot_bias()
        self.w_of, self.r_of = (t.tolist() for t in self.g.coords)  # per edge: writer, slot
        self.plan: NodePlan | None = None
        self.node_evals = 0
        self.evaluations = 0

    # -- set-up ------------------------------------------------------------------------------
    def _slot_bias(self) -> torch.Tensor:
        """[R, d] the constant every reader slot's input contains (attention output biases)."""
        g = self.g
        d = self.adapter.d_model
        bias = torch.zeros(g.n_readers, d, device=self.dev, dtype=self.dtype)
        acc = torch.zeros(d, device=self.dev, dtype=self.dtype)
        for layer in range(g.n_layers):
            bias[g.attn_slots(layer)] = acc
            b = self.adapter.attn_bias(layer)
            acc_after = acc if b is None else acc + b.detach().to(self.dtype)
            if not g.attn_only:
                bias[g.mlp_slot(layer)] = acc if g.parallel else acc_after
            acc = acc_after
        bias[g.logits_slot] = acc
        return bias

    def _dense(self, keep: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(keep.astype(np.float32)).to(self.dev, self.dtype)

    @torch.no_grad()
    def reset(self) -> None:
        """Writer outputs under the current mask, from one patched forward per batch."""
        mask = self._dense(self.keep)
        for state in self.states:
            state.out = writer_outputs(self.adapter, state.batch.clean,
                                       PatchPlan(mask=mask, ablated=state.abl))

    def _read(self, state: BatchState, slots: list[int], coef_keep: np.ndarray) -> torch.Tensor:
        """``bias + sum_u (1 - keep) abl_u + coef_keep * out_u`` for ``slots``: [n, b|1, p, d]."""
        valid = self.valid[:, slots]
        W = self.g.n_writers
        out = self.bias[slots][:, None, None, :]
        ck = self._dense(coef_keep & valid).T  # [n, W]
        out = out + (ck @ state.out.reshape(W, -1)).view(len(slots), *state.out.shape[1:])
        if state.abl is not None:
            ca = self._dense(~self.keep[:, slots] & valid).T
            out = out + (ca @ state.abl.reshape(W, -1)).view(len(slots), *state.abl.shape[1:])
        return out

    # -- one node ------------------------------------------------------------------------------
    def begin_node(self, v: int, expected: int | None = None) -> bool:
        """Prepare to test edges into node ``v``; False if ``v`` is dead (cannot reach logits).
        ``expected``: about how many candidates will be evaluated (the low-rank unembedding's
        per-node set-up is only worth it for enough of them)."""
        keep = self.keep
        self.plan = plan = self.planner.plan(keep, v)
        if plan is None:
            return False
        fixed = keep.copy()
        fixed[plan.rerun] = False
        for state in self.states:
            # [n_R, b|1, p, d]
            state.fixed_part = self._read(state, plan.readers, fixed[:, plan.readers])
            vin = self._read(state, plan.v_slots, keep[:, plan.v_slots])
            state.cur_in = {s: vin[i] for i, s in enumerate(plan.v_slots)}
            state.cand = None
        bases = None
        if not (plan.is_logits or self.all_pos
                or any(state.scorer.columns is not None for state in self.states)):
            writers = [self.g.nodes[plan.rerun[i]] for i in plan.logit_mixer.cols.tolist()]
            rows = max(len(state.batch) for state in self.states)
            bases = self.unembed.low_rank_bases(writers, rows, expected)
        shared = None if bases is None else LowRankUnembed.node_part(self.unembed.affine, bases)
        for state in self.states:
            state.low = None
            if shared is not None:
                # [b|1, d] the fixed part of the final residual
                fixed_part = state.fixed_part[plan.logit_mixer.rows.start, :, -1]
                state.low = LowRankUnembed(shared, fixed_part.expand(len(state.batch), -1))
        return True

    def max_candidates(self) -> int:
        """How many candidates fit the memory budget in one evaluation."""
        state, plan = self.states[0], self.plan
        per_example = state.out[0, 0].numel() * state.out.element_size()
        per_cand = (len(plan.rerun) + 3 * len(plan.v_slots) + 2) * per_example * self.n
        if self.unembed.into is not None and state.scorer.columns is None:  # the logits buffer
            rows = max(len(s.batch) * s.batch.k for s in self.states)  # one batch at a time
            per_cand += rows * self.unembed.vocab_size(state.out) * state.out.element_size()
        return max(1, int(self.mem_budget // per_cand))

    def _mix(self, state: BatchState, rerun_out: torch.Tensor, mixer: Mixer, last: bool,
             c: int) -> torch.Tensor:
        """Inputs of reader ``rows``: fixed part + kept re-run writers: [n, c, b, p or 1, d]."""
        fixed_part = state.fixed_part[mixer.rows]
        if last:
            fixed_part, rerun_out = fixed_part[..., -1:, :], rerun_out[..., -1:, :]
        b, p, d = rerun_out.shape[2:]
        n = fixed_part.shape[0]
        if len(mixer.cols) == 0:
            return fixed_part[:, None].expand(n, c, b, p, d)
        src = rerun_out.index_select(0, mixer.cols)
        mix = mixer.coef @ src.reshape(len(mixer.cols), -1)
        return fixed_part[:, None] + mix.view(n, c, b, p, d)

    # -- candidates ----------------------------------------------------------------------------
    def _candidate_inputs(self, state: BatchState, removals: dict[int, SlotRemovals],
                          c: int) -> dict[int, torch.Tensor]:
        """v's inputs under each candidate: slot -> [c, b, p or 1, d]."""
        p = state.out.shape[2]
        cand_in = {}
        for s in self.plan.v_slots:
            sl = slice(p - 1, p) if self.plan.v_last[s] else slice(None)
            base = state.cur_in[s][:, sl]  # [b, p', d]
            if s in removals:
                rm = removals[s]
                delta = state.out[rm.writers][:, :, sl]
                if state.abl is not None:
                    delta = delta - state.abl[rm.writers][:, :, sl]
                corr = (rm.coef @ delta.reshape(len(rm.writers), -1)).view(c, *base.shape)
                cand_in[s] = base[None] - corr
            else:
                cand_in[s] = base[None].expand(c, *base.shape)
        return cand_in

    def _rerun(self, state: BatchState, cand_in: dict[int, torch.Tensor], c: int,
               changed=()) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Re-run v and the plan's downstream nodes: (rerun_out, logits input [c, b, 1 or p, d]).
        ``changed``: v's input slots some candidate changes."""
        plan, g = self.plan, self.g
        if plan.is_logits:
            return None, cand_in[g.logits_slot]
        b, p, d = state.out.shape[1:]
        rerun_out = state.out.new_empty((len(plan.rerun), c, b, p, d))
        for i in plan.last_only_rows:  # never read there, but 0 * NaN is NaN
            rerun_out[i, :, :, : p - 1] = 0
        node = g.nodes[plan.v]
        at = slice(None) if plan.need_all[plan.v] else slice(p - 1, p)
        qs, ks, vs = plan.v_slots if node.kind is NodeKind.ATTN else (None, None, None)
        if (node.kind is NodeKind.ATTN and self.multi_query_ok and plan.v_last[qs]
                and not plan.need_all[plan.v] and ks not in changed and vs not in changed):
            # only the query changes: the candidates' last queries as query rows of one
            # attention over the current keys and values (not c copies of them)
            q = cand_in[qs][:, :, -1].transpose(0, 1)  # [b, c, d]
            if c == p:  # as many queries as keys would read as a causal full-sequence call
                q = torch.cat([q, q[:, -1:]], 1)
            out = self.heads_fn(node.layer, [node.head], q[None], state.cur_in[ks][None],
                                state.cur_in[vs][None])[0]  # [b, c (+1), d]
            out = out[:, :c].transpose(0, 1)[:, :, None]  # [c, b, 1, d]
        elif node.kind is NodeKind.ATTN:
            q, k, vv = (cand_in[s].reshape(1, c * b, -1, d) for s in plan.v_slots)
            out = self.heads_fn(node.layer, [node.head], q, k, vv)[0]
        else:
            x = cand_in[plan.v_slots[0]]
            out = self.adapter.mlp(node.layer, x.reshape(c * b, -1, d))
        out = out.view(c, b, -1, d)
        rerun_out[0, :, :, at] = (out[:, :, -1:] if out.shape[2] != rerun_out[0, :, :, at].shape[2]
                                  else out)
        for step in plan.steps:
            if isinstance(step, HeadsStep):
                self._run_heads(state, rerun_out, step, c)
            else:
                inp = self._mix(state, rerun_out, step.mixer, step.last, c)[0]
                out = self.adapter.mlp(step.layer, inp.reshape(c * b, -1, d))
                rerun_out[step.out, :, :, slice(p - 1, p) if step.last else slice(None)] = out.view(
                    c, b, -1, d)
        return rerun_out, self._mix(state, rerun_out, plan.logit_mixer, not self.all_pos, c)[0]

    def _run_heads(self, state: BatchState, rerun_out: torch.Tensor, step: HeadsStep,
                   c: int) -> None:
        b, p, d = state.out.shape[1:]
        inp = self._mix(state, rerun_out, step.mixer, False, c)
        nh = inp.shape[0] // 3
        inp = inp.reshape(3, nh, c * b, p, d)  # q, k, v of each re-run head
        for grp in step.groups:
            q = inp[0, grp.rows]
            if grp.last and self.last_query_ok:
                q = q[:, :, -1:]
            res = self.heads_fn(step.layer, grp.heads, q, inp[1, grp.rows], inp[2, grp.rows])
            res = res.view(len(grp.heads), c, b, -1, d)
            if grp.last:
                res = res[:, :, :, -1:]
            at = slice(p - 1, p) if grp.last else slice(None)
            for i, o in enumerate(grp.outs):
                rerun_out[o, :, :, at] = res[i]

    @torch.no_grad()
    def evaluate(self, sets: list[list[int]]) -> list[float]:
        """Mean metric over the dataset with each set of edges (into ``v``) removed on top of
        the current mask (a shard's sums added over its ranks: one collective per call).
        Remembers the candidates for :meth:`commit`."""
        c = len(sets)
        removals = slot_removals(sets, self.plan.v_slots, self.w_of, self.r_of, self.dev,
                                 self.dtype)
        totals = [0.0] * c
        low = all(state.low is not None for state in self.states)
        for state in self.states:
            b, d = state.out.shape[1], state.out.shape[3]
            self.adapter.prepare(state.batch.clean)  # per-run state (e.g. rotary tables)
            cand_in = self._candidate_inputs(state, removals, c)
            rerun_out, final = self._rerun(state, cand_in, c, removals.keys())
            if self.all_pos:  # final [c, b, p, d] -> at the read positions [c, b, k, d]
                idx = state.batch.positions[None, :, :, None].expand(c, -1, -1, d)
                final = final.gather(2, idx)
            values = self._score(state, rerun_out, final.reshape(c, b, -1, d)).sum(1).tolist()
            for j in range(c):
                totals[j] += values[j]
            state.cand = Candidates(rerun_out, cand_in)
        self.evaluations += c
        if low and all(state.low is not None for state in self.states):  # no batch fell back
            self.low_rank_evals += c
        self.node_evals += c * (len(self.plan.rerun) + 1)
        totals = self.ranks.sum_floats(totals)  # a shard's totals, added over its ranks
        return [t / self.n_total for t in totals]

    def _score(self, state: BatchState, rerun_out: torch.Tensor | None,
               final: torch.Tensor) -> torch.Tensor:
        """The metric [c, b] of the final residuals ``final`` [c, b, k, d] (``rerun_out``: the
        re-run writers' outputs, for the low-rank unembedding).

        A metric that reads a few columns gets only those (:meth:`_unembed`). Otherwise the
        adapter's ``unembed_into(x, out)``, when it has one, writes every candidate's logits into
        one reused buffer (a fresh 50k-wide tensor per evaluation costs as much in page faults as
        a third of the GEMM), and the metric, which may overwrite its input, reads views of it
        ``SCORE_ROWS`` rows at a time (its own temporaries stay small enough for the allocator
        to reuse and the cache to hold); each candidate's value is computed on its own rows
        alone, so the grouping changes no number. With a low-rank unembedding for the node
        (:mod:`.kernel`) the logits are one ``[rows, r + b + 1]`` product away."""
        scorer = state.scorer
        c, b, k, d = final.shape
        fn = self.unembed.into
        if scorer.columns is not None or fn is None:
            logits = self._unembed(final.reshape(c * b, k, d), scorer.columns)
            return scorer(logits.view(c, b, k, -1))
        rows = c * b * k
        buf = self.unembed.buffer(rows, final)  # [rows, vocab]
        inp = None
        if state.low is not None:
            mixer = self.plan.logit_mixer
            writes = [rerun_out[u, :, :, -1] * mixer.coef[0, i]
                      for i, u in enumerate(mixer.cols.tolist())]
            inp = state.low.inputs(writes, final[:, :, -1])  # [rows, r + b + 1]
            if inp is None:  # a write outside its basis: the full unembedding from now on
                state.low = None
        if inp is None:
            fn(final.reshape(rows, d), buf)
        per = b * k  # rows per candidate
        g = max(1, SCORE_ROWS // per)  # candidates per metric call
        values = []
        for i in range(0, c, g):
            at = slice(i * per, min(i + g, c) * per)
            if inp is not None:  # each group's logits just before the metric reads them
                torch.mm(inp[at], state.low.A, out=buf[at])
            values.append(scorer(buf[at].view(-1, b, k, buf.shape[1])))
        return torch.cat(values)

    def _unembed(self, x: torch.Tensor, columns: torch.Tensor | None) -> torch.Tensor:
        """Logits [n, k, vocab] of the final residual ``x`` [n, k, d], or only at the metric's
        ``columns`` [M] -> [n, k, M] (through the adapter's ``unembed_columns(x, columns)``
        when it has one: the final norm, then M rows of the unembedding)."""
        if columns is None:
            return self.adapter.unembed(x)
        if self.unembed_columns is not None:
            return self.unembed_columns(x, columns)
        return self.adapter.unembed(x).index_select(-1, columns)

    def commit(self, j: int) -> None:
        """Make candidate ``j`` of the last evaluation the current state (only the positions
        that were computed: the others are never read again)."""
        plan = self.plan
        for state in self.states:
            p = state.out.shape[2]
            if state.cand.rerun_out is not None:
                for i, u in enumerate(plan.rerun):
                    at = slice(None) if plan.need_all[u] else slice(p - 1, p)
                    state.out[u, :, at] = state.cand.rerun_out[i, j, :, at]
            for s in plan.v_slots:
                at = slice(p - 1, p) if plan.v_last[s] else slice(None)
                state.cur_in[s][:, at] = state.cand.inputs[s][j]

    def end_node(self) -> None:
        for state in self.states:
            state.fixed_part, state.cand, state.cur_in, state.low = None, None, {}, None
        self.plan = None
