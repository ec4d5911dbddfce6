"""Iterative pruning (ACDC, Conmy et al. 2023), fast and exact, and an attribution-guided hybrid.

The algorithm (:func:`acdc`; :func:`acdc_naive` is the slow reference it must agree with)::

    M = every edge kept;  m_cur = m(M)                      m: mean metric over the dataset
    for v in nodes, from the logits backwards (reverse topological order):
        if v has no path of kept edges to the logits:       # a dead node: its inputs cannot
            remove every edge into v (score 0, untested)    # matter, as in ACDC
            continue
        for e in the edges into v (q, then k, then v inputs for a head; within an input the
                                   writers nearest to v first):
            m_new = m(M without e)                           # exact patching
            score[e] = m_new - m_cur
            if damage(m_new, m_cur) < tau:  M = M without e;  m_cur = m_new

``damage`` is how much worse the behaviour got: ``m_new - m_cur`` for metrics where lower is
better (the default KL divergence to the full model, NLL), ``m_cur - m_new`` where higher is
better (logit difference), and ``|m_new - m_cur|`` with ``abs_value=True``. A removal that
improves the metric always passes. The removal is kept for the rest of the search.

Why :func:`acdc` is fast without changing the answer
    * Nothing upstream of ``v`` changes while edges into ``v`` are tested, and every edge
      downstream of ``v`` is already decided. So the engine keeps the current outputs of every
      writer, precomputes once per node each downstream reader's input from the writers that
      cannot change, and per candidate re-runs only ``v`` and the nodes on a path of kept edges
      from ``v`` to the logits (other downstream nodes cannot be affected, or cannot affect the
      metric). The logits read only the last position.
    * Candidates are batched: the next ``k`` edges of a node are evaluated in one forward with
      the candidates stacked on the batch axis, speculating that each is removed (candidate
      ``j`` removes edges ``1..j``). Decisions are then taken in order; candidate ``j`` is exactly
      the sequential algorithm's test as long as edges ``1..j-1`` were removed, and at the first
      kept edge the rest of the chunk is discarded and re-evaluated from the new state. ``k``
      grows while removals are accepted and shrinks after a rejection.
    * Heads are re-run one by one through a per-head kernel (GPT-2 has one, checked against the
      adapter at start-up; other families fall back to the adapter's whole-layer call).
    Up to floating-point summation order the tested masks and metric values are those of the
    reference, so the decisions are the same (tests check identical circuits in float64).

Checkpoints: with ``checkpoint=PATH`` the state (mask, scores, position, current metric) is
written atomically every ``checkpoint_every`` nodes and when the run is interrupted (Ctrl-C or
any exception); a run given the same path resumes after the last finished node, and refuses a
checkpoint written for another model, dataset or setting.

:func:`acdc_guided` orders each node's edges by attribution score (EAP-IG by default) and
verifies removals exactly; see its docstring and docs/acdc.md.
"""

from __future__ import annotations

import bisect
import hashlib
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .errors import AcdcError
from .graph import Graph
from .metrics import Metric
from .models import LoadedModel
from .patching import Ablation, run
from .progress import progress_bar
from .tasks import Batch

__all__ = ["PruneResult", "NodeDone", "PruneWarning", "acdc", "acdc_naive", "acdc_guided",
           "visit_order", "with_clean_logits", "suggest_tau"]

CHECKPOINT_VERSION = 1


class PruneWarning(UserWarning):
    """A pruning run whose threshold removed every edge or none."""


@dataclass
class PruneResult:
    """What a pruning run decided.

    ``scores[e]`` is the metric change ``m(without e) - m(current)`` measured when ``e`` was
    tested (0 for edges removed untested because their node was dead; the attribution estimate
    for edges :func:`acdc_guided` decided without a single-edge test). ``decisions`` lists
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


@dataclass
class NodeDone:
    """Passed to ``callback`` after each node: ``position`` nodes of ``total`` are done."""

    position: int
    total: int
    node: str
    n_tested: int
    n_kept: int


# ----- the shared definition: order, deadness, damage ----------------------------------------


def visit_order(g: Graph) -> list[tuple[int, list[int]]]:
    """``(node index, edge ids in test order)`` for every node that has inputs, logits first.

    Nodes are visited in reverse topological order (logits, last MLP, last layer's heads from
    the highest head down, ...). A head's edges come q first, then k, then v; within one input,
    the nearest writer first (reverse writer order).
    """
    start = _slot_starts(g)
    out = []
    for node_idx in range(len(g.nodes) - 1, 0, -1):
        edges = []
        for slot in _node_slots(g, node_idx):
            edges += [start[slot] + w for w in range(g.upstream_count(slot) - 1, -1, -1)]
        out.append((node_idx, edges))
    return out


def _slot_starts(g: Graph) -> list[int]:
    """Edge id of the first edge into each reader slot (edges are ordered by slot, writer)."""
    start, n = [], 0
    for slot in range(g.n_readers):
        start.append(n)
        n += g.upstream_count(slot)
    return start


def _node_slots(g: Graph, node_idx: int) -> list[int]:
    """Reader slots of a node (q, k, v for a head; one for an MLP or the logits)."""
    node = g.nodes[node_idx]
    if node.kind.value == "logits":
        return [g.logits_slot]
    if node.kind.value == "mlp":
        return [g.mlp_slot(node.layer)]
    if node.kind.value == "attn":
        a = g.attn_slots(node.layer).start
        return [a + k * g.n_heads + node.head for k in range(3)]
    return []


class _Topology:
    """Node-level reachability over kept edges (numpy; the graph is small)."""

    def __init__(self, g: Graph):
        self.g = g
        self.W, self.N = g.n_writers, len(g.nodes)
        slot_node = np.zeros(g.n_readers, dtype=np.int64)
        for i in range(1, self.N):
            for s in _node_slots(g, i):
                slot_node[s] = i
        self.slot_node = slot_node
        self.S = np.zeros((g.n_readers, self.N), dtype=np.float32)  # slot -> node one-hot
        self.S[np.arange(g.n_readers), slot_node] = 1
        self.valid = g.valid.numpy()

    def adjacency(self, keep: np.ndarray) -> np.ndarray:
        """[W, N] bool: writer u has a kept edge into node v."""
        return ((keep & self.valid).astype(np.float32) @ self.S) > 0

    def alive(self, adj: np.ndarray) -> np.ndarray:
        """[N] bool: the node has a path of kept edges to the logits."""
        alive = np.zeros(self.N, dtype=bool)
        alive[-1] = True
        for u in range(self.W - 1, -1, -1):
            alive[u] = bool((adj[u] & alive).any())
        return alive

    def downstream(self, adj: np.ndarray, alive: np.ndarray, v: int) -> list[int]:
        """Writers after ``v`` on a path of kept edges from ``v`` to the logits (sorted)."""
        reach = np.zeros(self.N, dtype=bool)
        reach[v] = True
        for u in range(v, self.W):
            if reach[u]:
                reach |= adj[u]
        return [u for u in range(v + 1, self.W) if reach[u] and alive[u]]


def _damage_fn(metric: Metric, abs_value: bool) -> Callable[[float, float], float]:
    if abs_value:
        return lambda new, cur: abs(new - cur)
    if metric.higher_is_better:
        return lambda new, cur: cur - new
    return lambda new, cur: new - cur


def with_clean_logits(model: LoadedModel, batches: list[Batch], metric: Metric) -> list[Batch]:
    """``batches`` carrying the full model's last-position logits when ``metric`` needs them."""
    if "clean_logits" not in metric.needs or all(b.clean_logits is not None for b in batches):
        return batches
    out = []
    with torch.no_grad():
        for b in batches:
            c = Batch(b.clean, b.corrupted, b.answer, b.wrong, b.rows, b.clean_logits)
            if c.clean_logits is None:
                c.clean_logits = run(model.adapter, b.clean, last_only=True)[:, -1]
            out.append(c)
    return out


def _repeat(batch: Batch, c: int) -> Batch:
    """``batch`` with every example repeated for ``c`` stacked candidates (candidate-major)."""
    if c == 1:
        return batch
    rep = lambda t: None if t is None else t.repeat(c, *([1] * (t.dim() - 1)))  # noqa: E731
    return Batch(rep(batch.clean), rep(batch.corrupted), rep(batch.answer), rep(batch.wrong),
                 list(batch.rows) * c, rep(batch.clean_logits))


def suggest_tau(damages: list[float] | np.ndarray) -> tuple[float, float] | None:
    """A tau range from observed per-edge damages: their 50th to 95th percentile of the
    positive ones (None when none was positive)."""
    d = np.asarray([x for x in damages if math.isfinite(x) and x > 0])
    if d.size == 0:
        return None
    return float(np.quantile(d, 0.5)), float(np.quantile(d, 0.95))


def _check_outcome(result: PruneResult, damages: list[float], g: Graph) -> None:
    """Warn (PruneWarning) when tau removed every edge or none, with a suggested range."""
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
    warnings.warn(msg, PruneWarning, stacklevel=4)  # the caller of acdc() / acdc_naive()


# ----- the naive reference --------------------------------------------------------------------


@torch.no_grad()
def acdc_naive(
    model: LoadedModel,
    batches: list[Batch],
    metric: Metric,
    ablation: Ablation,
    tau: float,
    *,
    abs_value: bool = False,
    max_tested: int | None = None,
    resume: str | Path | None = None,
    progress: bool = False,
) -> PruneResult:
    """The reference: one full patched forward (:func:`patching.run`) over the dataset per
    tested edge. Slow; kept to test :func:`acdc` (and to measure it against).

    ``max_tested`` stops after that many tests (made by this call); ``resume`` starts from a
    checkpoint file written by :func:`acdc` (read only), e.g. to compare decisions deep into a
    run without repeating its start.
    """
    t0 = time.perf_counter()
    g, adapter = model.graph, model.adapter
    batches = with_clean_logits(model, batches, metric)
    abls = [ablation.activations(adapter, b) for b in batches]
    n = sum(len(b) for b in batches)
    w_of, r_of = (t.tolist() for t in g.coords)
    damage = _damage_fn(metric, abs_value)
    mask = torch.ones(g.n_writers, g.n_readers, device=model.device, dtype=model.dtype)

    def m(mask) -> float:
        total = 0.0
        for b, abl in zip(batches, abls):
            logits = run(adapter, b.clean, mask=mask, ablated=abl, last_only=True)
            total += float(metric(logits[:, -1], b).sum())
        return total / n

    topo = _Topology(g)
    keep = np.ones((g.n_writers, g.n_readers), dtype=bool)
    scores = torch.zeros(g.n_edges)
    tested = torch.zeros(g.n_edges, dtype=torch.bool)
    decisions, damages = [], []
    order = visit_order(g)
    start = 0
    if resume is not None:
        state = _load_checkpoint(Path(resume), _fingerprint(
            model, batches, _run_settings("acdc", tau, metric, abs_value, ablation)))
        if state is None:
            raise AcdcError(f"no checkpoint at {resume}")
        keep[:] = state["keep"]
        mask = torch.from_numpy(keep.astype(np.float32)).to(mask)
        scores, tested = state["scores"].clone(), state["tested"].clone()
        decisions, damages = _decisions(state), list(state["damages"])
        cur, full, start = state["cur"], state["full"], state["position"]
    else:
        cur = full = m(mask)
    n_start = len(decisions)
    n_eval = 0
    nodes_done = start
    complete = True
    for node, edges in progress_bar(order[start:], desc="acdc (naive)", enabled=progress):
        alive = topo.alive(topo.adjacency(keep))
        if not alive[node]:
            for e in edges:
                mask[w_of[e], r_of[e]] = 0
                keep[w_of[e], r_of[e]] = False
            nodes_done += 1
            continue
        for e in edges:
            if max_tested is not None and len(decisions) - n_start >= max_tested:
                complete = False
                break
            mask[w_of[e], r_of[e]] = 0
            new = m(mask)
            n_eval += 1
            scores[e], tested[e] = new - cur, True
            damages.append(damage(new, cur))
            if damages[-1] < tau:
                cur = new
                keep[w_of[e], r_of[e]] = False
                decisions.append((e, True))
            else:
                mask[w_of[e], r_of[e]] = 1
                decisions.append((e, False))
        if not complete:
            break
        nodes_done += 1
    keep_e = torch.from_numpy(keep)[g.coords]
    result = PruneResult(keep_e, scores, tested, decisions, full, cur, tau, n_eval, 0,
                         time.perf_counter() - t0, nodes_done, complete)
    _check_outcome(result, damages, g)
    return result


# ----- the fast engine --------------------------------------------------------------------------


def _generic_heads(adapter, layer: int, heads: list[int], q, k, v):
    """Any family: the adapter's whole-layer call, other heads fed zeros, then selected."""
    H = adapter.n_heads

    def full(x):
        if len(heads) == H:
            return x
        out = x.new_zeros((H, *x.shape[1:]))
        out[heads] = x
        return out

    return adapter.attn_heads(layer, full(q), full(k), full(v))[heads]


def _head_kernel(model: LoadedModel):
    """``(kernel(layer, heads, q, k, v), last_query_ok)``: the fastest per-head attention the
    model's family allows. A family may provide ``attn_heads_subset(layer, heads, q, k, v)``
    (and ``attn_heads_subset_last_query = True`` when ``q`` may hold the last position only);
    it is used only after it reproduces ``attn_heads`` on random input, at every layer."""
    adapter = model.adapter
    generic = (lambda *a: _generic_heads(adapter, *a)), False
    fast = getattr(adapter, "attn_heads_subset", None)
    if fast is None:
        return generic
    last_ok = bool(getattr(adapter, "attn_heads_subset_last_query", False))
    try:  # prove it reproduces the adapter before trusting it
        H, d = adapter.n_heads, adapter.d_model
        gen = torch.Generator().manual_seed(0)
        x = [torch.randn(H, 2, 3, d, generator=gen).to(model.device, model.dtype)
             for _ in range(3)]
        heads = sorted({0, H - 1})
        tol = 1e-3 if model.dtype in (torch.float16, torch.bfloat16) else 1e-5
        with torch.no_grad():
            for layer in range(adapter.n_layers):
                want = adapter.attn_heads(layer, *x)[heads]
                scale = tol * (1 + float(want.abs().max()))
                got = fast(layer, heads, *(t[heads] for t in x))
                if (got - want).abs().max() > scale:
                    return generic
                if last_ok:
                    last = fast(layer, heads, x[0][heads][:, :, -1:], x[1][heads], x[2][heads])
                    if (last - want[:, :, -1:]).abs().max() > scale:
                        return generic
        return fast, last_ok
    except Exception:  # an adapter whose kernel does not fit its own attn_heads: fall back
        return generic


@dataclass
class _BatchState:
    batch: Batch
    abl: torch.Tensor | None  # [W, b|1, p, d] ablated writer outputs
    out: torch.Tensor | None = None  # [W, b, p, d] writer outputs under the current mask
    F: torch.Tensor | None = None  # [n_R, b|1, p, d] fixed part of the re-run readers' inputs
    cur_in: dict = field(default_factory=dict)  # slot of v -> [b, p, d] current input
    cand: tuple | None = None  # (chg [n_C, c, b, p, d], {slot: [c, b, p', d]}) last evaluation
    reps: dict = field(default_factory=dict)  # c -> the batch repeated for c candidates


class _Engine:
    """Evaluates candidate removal sets of edges into one node, re-running only what changes.

    ``keep`` ([W, R] numpy bool) is the caller's current mask; downstream columns must not
    change while a node is being tested (they never do in ACDC's order).

    Positions: a re-run node whose output reaches the logits only through MLPs, queries and
    the logits (never through a key or value) is needed at the last position only, and is
    computed there alone (queries only where the head kernel allows it).
    """

    def __init__(self, model: LoadedModel, batches: list[Batch], metric: Metric,
                 ablation: Ablation, keep: np.ndarray, mem_budget: float = 2**29):
        self.model, self.adapter, self.g = model, model.adapter, model.graph
        self.metric, self.keep = metric, keep
        self.dev, self.dtype = model.device, model.dtype
        self.n = sum(len(b) for b in batches)
        self.states = [_BatchState(b, ablation.activations(self.adapter, b)) for b in batches]
        self.heads_fn, self.last_query_ok = _head_kernel(model)
        self.mem_budget = mem_budget
        self.valid = self.g.valid.numpy()
        self.bias = self._slot_bias()
        self.topo = _Topology(self.g)
        w, r = self.g.coords
        self.w_of, self.r_of = w.tolist(), r.tolist()
        g = self.g
        # per reader slot: 0 q, 1 k, 2 v of a head, 3 MLP, 4 logits
        self.slot_kind = np.full(g.n_readers, 3, dtype=np.int64)
        for layer in range(g.n_layers):
            a = g.attn_slots(layer).start
            for kk in range(3):
                self.slot_kind[a + kk * g.n_heads : a + (kk + 1) * g.n_heads] = kk
        self.slot_kind[g.logits_slot] = 4
        self.slot_node = self.topo.slot_node
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
        for st in self.states:
            _, st.out = run(self.adapter, st.batch.clean, mask=mask, ablated=st.abl,
                            collect=True, last_only=True)

    def _read(self, st: _BatchState, slots: list[int], coef_keep: np.ndarray) -> torch.Tensor:
        """``bias + sum_u (1 - keep) abl_u + coef_keep * out_u`` for ``slots``: [n, b|1, p, d]."""
        valid = self.valid[:, slots]
        W = self.g.n_writers
        out = self.bias[slots][:, None, None, :]
        ck = self._dense(coef_keep & valid).T  # [n, W]
        out = out + (ck @ st.out.reshape(W, -1)).view(len(slots), *st.out.shape[1:])
        if st.abl is not None:
            ca = self._dense(~self.keep[:, slots] & valid).T
            out = out + (ca @ st.abl.reshape(W, -1)).view(len(slots), *st.abl.shape[1:])
        return out

    # -- one node ------------------------------------------------------------------------------
    def begin_node(self, v: int) -> bool:
        """Prepare to test edges into node ``v``; False if ``v`` is dead (cannot reach logits)."""
        g = self.g
        adj = self.topo.adjacency(self.keep)
        alive = self.topo.alive(adj)
        if not alive[v]:
            return False
        self.v = v
        self.is_logits = v == len(g.nodes) - 1
        D = [] if self.is_logits else self.topo.downstream(adj, alive, v)
        self.C = ([] if self.is_logits else [v]) + D  # writers re-run per candidate, in order
        self.pos = {u: i for i, u in enumerate(self.C)}
        self.need_all = self._positions()
        # plan: per layer the heads to re-run, then the MLP; the slots they read
        plan, R = [], []
        by_layer: dict[int, list] = {}
        for u in D:
            by_layer.setdefault(g.nodes[u].layer, []).append(u)
        for layer in sorted(by_layer):
            us = by_layer[layer]
            heads = [u for u in us if g.nodes[u].kind.value == "attn"]
            if heads:
                a = g.attn_slots(layer).start
                hs = [g.nodes[u].head for u in heads]
                slots = [a + kk * g.n_heads + h for kk in range(3) for h in hs]
                n_up = bisect.bisect_left(self.C, g.attn_upstream(layer))
                groups = []  # (heads of this layer, their rows among the 3n, last query only)
                for last in (False, True):
                    sel = [i for i, u in enumerate(heads) if self.need_all[u] != last]
                    if sel:
                        groups.append(([hs[i] for i in sel], sel,
                                       [self.pos[heads[i]] for i in sel], last))
                plan.append(("attn", layer, groups, slice(len(R), len(R) + len(slots)), n_up))
                R += slots
            mlps = [u for u in us if g.nodes[u].kind.value == "mlp"]
            if mlps:
                n_up = bisect.bisect_left(self.C, g.mlp_upstream(layer))
                plan.append(("mlp", layer, (self.pos[mlps[0]], not self.need_all[mlps[0]]),
                             slice(len(R), len(R) + 1), n_up))
                R.append(g.mlp_slot(layer))
        self.logit_row = len(R)
        R.append(g.logits_slot)
        self.R = R
        # coefficients of the re-run writers in the re-run readers (fixed while testing v)
        kc = self.keep[self.C][:, R] & self.valid[self.C][:, R]  # [n_C, n_R]
        self.plan = [(kind, layer, detail, self._mixer(kc, rows, n_up))
                     for kind, layer, detail, rows, n_up in plan]
        self.logit_mixer = self._mixer(kc, slice(self.logit_row, self.logit_row + 1),
                                       len(self.C))
        self.last_only_rows = [i for i, u in enumerate(self.C) if not self.need_all[u]]
        fixed = self.keep.copy()
        fixed[self.C] = False
        self.v_slots = _node_slots(g, v)
        # which of v's input positions matter: the last only, unless v's output is needed
        # everywhere (k and v inputs of a head always need every position)
        v_all = not self.is_logits and self.need_all[v]
        self.v_last = {s: not (v_all or self.slot_kind[s] in (1, 2) or
                               (self.slot_kind[s] == 0 and not self.last_query_ok))
                       for s in self.v_slots}
        for st in self.states:
            st.F = self._read(st, R, fixed[:, R])  # [n_R, b|1, p, d]
            vin = self._read(st, self.v_slots, self.keep[:, self.v_slots])
            st.cur_in = {s: vin[i] for i, s in enumerate(self.v_slots)}
            st.cand = None
        return True

    def _positions(self) -> dict[int, bool]:
        """For each re-run writer: is its output needed at every position (else: the last)?"""
        need: dict[int, bool] = {}
        last_node = len(self.g.nodes) - 1
        for u in reversed(self.C):
            cols = np.nonzero(self.keep[u] & self.valid[u])[0]
            na = False
            for s in cols:
                x, kind = int(self.slot_node[s]), int(self.slot_kind[s])
                if x == last_node or (x not in need):
                    continue  # the logits (last position), or a node that cannot matter
                if kind in (1, 2) or (kind == 0 and not self.last_query_ok) or need[x]:
                    na = True
                    break
            need[u] = na
        return need

    def max_candidates(self) -> int:
        """How many candidates fit the memory budget in one evaluation."""
        st = self.states[0]
        per_example = st.out[0, 0].numel() * st.out.element_size()
        per_cand = (len(self.C) + 3 * len(self.v_slots) + 2) * per_example * self.n
        return max(1, int(self.mem_budget // per_cand))

    def _mixer(self, kc: np.ndarray, rows: slice, n_up: int) -> tuple:
        """What :meth:`_mix` needs for reader ``rows``: only the re-run writers with a kept
        edge into them (a sparse circuit has few), and their coefficients."""
        sub = kc[:n_up, rows]  # [n_up, n_rows]
        cols = np.nonzero(sub.any(1))[0]
        K = self._dense(sub[cols]).T.contiguous()  # [n_rows, n_cols]
        return rows, torch.from_numpy(cols).to(self.dev), K

    def _mix(self, st, chg, mixer, last: bool, c: int) -> torch.Tensor:
        """Inputs of reader ``rows``: fixed part + kept re-run writers: [n, c, b, p or 1, d]."""
        rows, cols, K = mixer
        F = st.F[rows]
        if last:
            F, chg = F[..., -1:, :], chg[..., -1:, :]
        b, p, d = chg.shape[2:]
        n = F.shape[0]
        if len(cols) == 0:
            return F[:, None].expand(n, c, b, p, d)
        src = chg.index_select(0, cols)
        mix = K @ src.reshape(len(cols), -1)
        return F[:, None] + mix.view(n, c, b, p, d)

    def _batch(self, st: _BatchState, c: int) -> Batch:
        if c not in st.reps:
            st.reps[c] = _repeat(st.batch, c)
        return st.reps[c]

    @torch.no_grad()
    def evaluate(self, sets: list[list[int]]) -> list[float]:
        """Mean metric over the dataset with each set of edges (into ``v``) removed on top of
        the current mask. Remembers the candidates for :meth:`commit`."""
        c = len(sets)
        g, adapter = self.g, self.adapter
        totals = [0.0] * c
        by_slot: dict[int, list[int]] = {s: [] for s in self.v_slots}
        for es in sets:
            for e in es:
                if e not in by_slot[self.r_of[e]]:
                    by_slot[self.r_of[e]].append(e)
        coef = {}
        for s, es in by_slot.items():
            if es:
                col = {e: i for i, e in enumerate(es)}
                K = np.zeros((c, len(es)), dtype=np.float32)
                for j, cand in enumerate(sets):
                    for e in cand:
                        if self.r_of[e] == s:
                            K[j, col[e]] = 1
                coef[s] = (torch.from_numpy(K).to(self.dev, self.dtype),
                           torch.tensor([self.w_of[e] for e in es], device=self.dev))
        node = g.nodes[self.v]
        for st in self.states:
            b, p, d = st.out.shape[1:]
            # adapters may keep per-run state (rotary tables for this length): set it up
            adapter.embed(st.batch.clean[:1])
            cand_in = {}
            for s in self.v_slots:
                sl = slice(p - 1, p) if self.v_last[s] else slice(None)
                base = st.cur_in[s][:, sl]  # [b, p', d]
                if s in coef:
                    K, ws = coef[s]
                    delta = st.out[ws][:, :, sl]
                    if st.abl is not None:
                        delta = delta - st.abl[ws][:, :, sl]
                    corr = (K @ delta.reshape(len(ws), -1)).view(c, *base.shape)
                    cand_in[s] = base[None] - corr
                else:
                    cand_in[s] = base[None].expand(c, *base.shape)
            chg = None
            if self.is_logits:
                final = cand_in[g.logits_slot]  # [c, b, 1, d]
            else:
                chg = st.out.new_empty((len(self.C), c, b, p, d))
                for i in self.last_only_rows:  # never read there, but 0 * NaN is NaN
                    chg[i, :, :, : p - 1] = 0
                at = slice(None) if self.need_all[self.v] else slice(p - 1, p)
                if node.kind.value == "attn":
                    q, k, vv = (cand_in[s].reshape(1, c * b, -1, d) for s in self.v_slots)
                    out = self.heads_fn(node.layer, [node.head], q, k, vv)[0]
                else:
                    x = cand_in[self.v_slots[0]]
                    out = adapter.mlp(node.layer, x.reshape(c * b, -1, d))
                out = out.view(c, b, -1, d)
                chg[0, :, :, at] = out[:, :, -1:] if out.shape[2] != chg[0, :, :, at].shape[2] \
                    else out
                for kind, layer, detail, mixer in self.plan:
                    if kind == "attn":
                        inp = self._mix(st, chg, mixer, False, c)
                        nh = inp.shape[0] // 3
                        inp = inp.reshape(3, nh, c * b, p, d)
                        for hs, sel, outs, last in detail:
                            q = inp[0, sel]
                            if last and self.last_query_ok:
                                q = q[:, :, -1:]
                            res = self.heads_fn(layer, hs, q, inp[1, sel], inp[2, sel])
                            res = res.view(len(hs), c, b, -1, d)
                            if last:
                                res = res[:, :, :, -1:]
                            at = slice(p - 1, p) if last else slice(None)
                            for i, o in enumerate(outs):
                                chg[o, :, :, at] = res[i]
                    else:
                        o, last = detail
                        inp = self._mix(st, chg, mixer, last, c)[0]
                        out = adapter.mlp(layer, inp.reshape(c * b, -1, d))
                        chg[o, :, :, slice(p - 1, p) if last else slice(None)] = out.view(
                            c, b, -1, d)
                final = self._mix(st, chg, self.logit_mixer, True, c)[0]
            logits = adapter.unembed(final.reshape(c * b, 1, d))[:, -1]
            values = self.metric(logits, self._batch(st, c)).view(c, b).sum(1).tolist()
            for j in range(c):
                totals[j] += values[j]
            st.cand = (chg, cand_in)
        self.evaluations += c
        self.node_evals += c * (len(self.C) + 1)
        return [t / self.n for t in totals]

    def commit(self, j: int) -> None:
        """Make candidate ``j`` of the last evaluation the current state (only the positions
        that were computed: the others are never read again)."""
        for st in self.states:
            chg, cand_in = st.cand
            p = st.out.shape[2]
            if chg is not None:
                for i, u in enumerate(self.C):
                    at = slice(None) if self.need_all[u] else slice(p - 1, p)
                    st.out[u, :, at] = chg[i, j, :, at]
            for s in self.v_slots:
                at = slice(p - 1, p) if self.v_last[s] else slice(None)
                st.cur_in[s][:, at] = cand_in[s][j]

    def end_node(self) -> None:
        for st in self.states:
            st.F, st.cand, st.cur_in = None, None, {}


# ----- checkpoints ------------------------------------------------------------------------------


def _fingerprint(model: LoadedModel, batches: list[Batch], settings: dict) -> dict:
    h = hashlib.sha256()
    for b in batches:
        h.update(b.clean.cpu().numpy().tobytes())
        h.update(b.corrupted.cpu().numpy().tobytes())
        h.update(b.answer.cpu().numpy().tobytes())
    g = model.graph
    return {"model": model.weights_hash, "data": h.hexdigest()[:16],
            "graph": [g.n_layers, g.n_heads, g.parallel, g.attn_only],
            **{k: v for k, v in settings.items()}}


def _run_settings(label: str, tau: float, metric: Metric, abs_value: bool,
                  ablation: Ablation) -> dict:
    """What a checkpoint must agree on besides the model and the data."""
    return {"method": label, "tau": float(tau), "metric": metric.name,
            "abs_value": bool(abs_value), "ablation": ablation.kind}


def _save_checkpoint(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)  # atomic: a reader sees the old file or the new one


def _decisions(state: dict) -> list[tuple[int, bool]]:
    return [(int(e), bool(r)) for e, r in np.asarray(state["decisions"]).reshape(-1, 2)]


def _load_checkpoint(path: Path, fingerprint: dict) -> dict | None:
    if not path.exists():
        return None
    try:
        state = torch.load(path, weights_only=False)
    except Exception as e:
        raise AcdcError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); "
                        "delete it to start over") from None
    if state.get("version") != CHECKPOINT_VERSION:
        raise AcdcError(f"checkpoint {path} has version {state.get('version')}, expected "
                        f"{CHECKPOINT_VERSION}; delete it to start over")
    old = state.get("fingerprint", {})
    diff = [k for k in sorted(set(old) | set(fingerprint)) if old.get(k) != fingerprint.get(k)]
    if diff:
        what = ", ".join(f"{k} {old.get(k)!r} vs {fingerprint.get(k)!r}" for k in diff[:4])
        raise AcdcError(f"checkpoint {path} was written by a different run ({what}); use "
                        "another checkpoint path or delete it")
    return state


# ----- fast ACDC --------------------------------------------------------------------------------


def acdc(
    model: LoadedModel,
    batches: list[Batch],
    metric: Metric,
    ablation: Ablation,
    tau: float,
    *,
    abs_value: bool = False,
    speculate: int = 32,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 10,
    callback: Callable[[NodeDone], None] | None = None,
    max_tested: int | None = None,
    mem_budget_mb: float = 512,
    progress: bool = True,
) -> PruneResult:
    """ACDC with tau ``tau`` (see the module docstring); the same answer as :func:`acdc_naive`.

    ``speculate`` caps how many candidates are stacked in one forward; ``max_tested`` stops
    after that many tested edges (a prefix of the run, ``complete=False``); ``callback`` gets a
    :class:`NodeDone` after each node (raising from it interrupts the run, after writing the
    checkpoint).
    """
    return _Pruner(model, batches, metric, ablation, tau, abs_value=abs_value,
                   speculate=speculate, checkpoint=checkpoint,
                   checkpoint_every=checkpoint_every, callback=callback, max_tested=max_tested,
                   mem_budget_mb=mem_budget_mb, progress=progress).run()


class _Pruner:
    """The driver shared by :func:`acdc` and :func:`acdc_guided` (``estimates`` set)."""

    def __init__(self, model, batches, metric, ablation, tau, *, abs_value=False, speculate=32,
                 checkpoint=None, checkpoint_every=10, callback=None, max_tested=None,
                 mem_budget_mb=512, progress=True, estimates=None, keep_factor=None,
                 group_fraction=0.5, label="acdc"):
        if not math.isfinite(tau):
            raise AcdcError(f"tau must be a finite number, got {tau}")
        if speculate < 1:
            raise AcdcError(f"speculate must be at least 1, got {speculate}")
        self.model, self.g = model, model.graph
        self.batches = with_clean_logits(model, batches, metric)
        self.metric, self.ablation, self.tau = metric, ablation, float(tau)
        self.damage = _damage_fn(metric, abs_value)
        self.speculate, self.max_tested = int(speculate), max_tested
        self.callback, self.progress, self.label = callback, progress, label
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.every = max(1, int(checkpoint_every))
        self.estimates = estimates
        self.keep_factor, self.group_fraction = keep_factor, group_fraction
        self.info_groups = 0  # accepted group removals (guided)
        self.mem_budget = mem_budget_mb * 2**20
        settings = _run_settings(label, self.tau, metric, abs_value, ablation)
        if estimates is not None:
            settings.update(keep_factor=keep_factor, group_fraction=group_fraction,
                            estimates=hashlib.sha256(estimates.numpy().tobytes()).hexdigest()[:16])
        self.settings = settings

    def run(self) -> PruneResult:
        t0 = time.perf_counter()
        g = self.g
        W, R = g.n_writers, g.n_readers
        self.keep = np.ones((W, R), dtype=bool)
        self.scores = torch.zeros(g.n_edges)
        self.tested = torch.zeros(g.n_edges, dtype=torch.bool)
        self.decisions: list[tuple[int, bool]] = []
        self.damages: list[float] = []
        self.w_of, self.r_of = (t.tolist() for t in g.coords)
        order = visit_order(g)
        eng = self.engine = _Engine(self.model, self.batches, self.metric, self.ablation,
                                    self.keep, self.mem_budget)
        self.fingerprint = (_fingerprint(self.model, self.batches, self.settings)
                            if self.checkpoint else None)
        state = _load_checkpoint(self.checkpoint, self.fingerprint) if self.checkpoint else None
        start, prior_s, prior_evals = 0, 0.0, (0, 0)
        if state is not None:
            self.keep[:] = state["keep"]
            self.scores, self.tested = state["scores"], state["tested"]
            self.decisions, self.damages = _decisions(state), list(state["damages"])
            self.cur, self.full = state["cur"], state["full"]
            start, prior_s = state["position"], state["seconds"]
            prior_evals = state["evaluations"]
        else:
            with torch.no_grad():  # the full model's metric, computed as the reference does
                total = 0.0
                for st in eng.states:
                    logits = run(self.model.adapter, st.batch.clean, ablated=st.abl,
                                 mask=torch.ones(W, R, device=eng.dev, dtype=eng.dtype),
                                 last_only=True)
                    total += float(self.metric(logits[:, -1], st.batch).sum())
            self.cur = self.full = total / eng.n
        self.decisions_at_start = len(self.decisions)
        eng.evaluations, eng.node_evals = prior_evals
        if start < len(order):
            eng.reset()
        self.k = 1
        complete = True
        boundary = self._snapshot(start, prior_s, t0)
        pos = start
        try:
            for pos in progress_bar(range(start, len(order)), desc=self.label,
                                    enabled=self.progress, total=len(order) - start):
                node, edges = order[pos]
                if not self._node(node, edges):
                    complete = False
                    break
                boundary = self._snapshot(pos + 1, prior_s, t0)
                if self.checkpoint and ((pos + 1 - start) % self.every == 0
                                        or pos + 1 == len(order)):
                    _save_checkpoint(self.checkpoint, self._checkpoint(boundary))
                if self.callback is not None:
                    self.callback(NodeDone(pos + 1, len(order), g.nodes[node].name,
                                           len(self.decisions), int(self.keep.sum())))
        except BaseException:
            if self.checkpoint:
                _save_checkpoint(self.checkpoint, self._checkpoint(boundary))
            raise
        keep_e = torch.from_numpy(self.keep & g.valid.numpy())[g.coords]
        nodes_done = boundary["position"] if complete else pos
        result = PruneResult(keep_e, self.scores, self.tested, self.decisions, self.full,
                             self.cur, self.tau, eng.evaluations, eng.node_evals,
                             prior_s + time.perf_counter() - t0, nodes_done, complete,
                             info={"resumed_from": start} if start else {})
        _check_outcome(result, self.damages, g)
        return result

    def _snapshot(self, position: int, prior_s: float, t0: float) -> dict:
        """The state at a node boundary (decisions and damages only grow: kept as lengths)."""
        return {"position": position, "keep": self.keep.copy(), "scores": self.scores.clone(),
                "tested": self.tested.clone(), "n_decisions": len(self.decisions),
                "n_damages": len(self.damages), "cur": self.cur, "full": self.full,
                "seconds": prior_s + time.perf_counter() - t0,
                "evaluations": (self.engine.evaluations, self.engine.node_evals)}

    def _checkpoint(self, snap: dict) -> dict:
        """The checkpoint of a snapshot (compact arrays, no Python object lists)."""
        state = {k: v for k, v in snap.items() if not k.startswith("n_")}
        dec = self.decisions[: snap["n_decisions"]]
        state["decisions"] = np.asarray(dec, dtype=np.int64).reshape(-1, 2)
        state["damages"] = np.asarray(self.damages[: snap["n_damages"]], dtype=np.float64)
        state["version"] = CHECKPOINT_VERSION
        state["fingerprint"] = self.fingerprint
        return state

    def _remove(self, e: int) -> None:
        self.keep[self.w_of[e], self.r_of[e]] = False

    def _budget_left(self) -> int | None:
        if self.max_tested is None:
            return None
        return self.max_tested - (len(self.decisions) - self.decisions_at_start)

    def _node(self, node: int, edges: list[int]) -> bool:
        """Decide every edge into ``node``; False when ``max_tested`` stopped the run."""
        eng = self.engine
        if not eng.begin_node(node):  # dead: nothing it does can reach the logits
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
        i = 0
        cap = min(self.speculate, eng.max_candidates())
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
            self.k = min(2 * k, self.speculate) if accepted == k - 1 else max(1, accepted + 1)
        return True

    def _guided(self, edges: list[int]) -> bool:
        """Attribution-guided: see :func:`acdc_guided`."""
        eng = self.engine
        est = self.estimates
        bound = None if self.keep_factor is None else self.keep_factor * abs(self.tau)
        order = sorted(edges, key=lambda e: (abs(float(est[e])), edges.index(e)))
        testable = [e for e in order if bound is None or abs(float(est[e])) < bound]
        for e in order[len(testable):]:  # estimated too important to test: kept
            self.scores[e] = float(est[e])
        # one group test: the least important edges whose estimates sum below a fraction of tau
        budget, n_group = self.group_fraction * abs(self.tau), 0
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


def acdc_guided(
    model: LoadedModel,
    batches: list[Batch],
    metric: Metric,
    ablation: Ablation,
    tau: float,
    estimates: torch.Tensor,
    *,
    keep_factor: float | None = 10.0,
    group_fraction: float = 0.5,
    abs_value: bool = False,
    speculate: int = 32,
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 10,
    callback: Callable[[NodeDone], None] | None = None,
    max_tested: int | None = None,
    mem_budget_mb: float = 512,
    progress: bool = True,
) -> PruneResult:
    """ACDC guided by per-edge attribution ``estimates`` (e.g. EAP-IG on the same metric).

    Nodes are visited as in :func:`acdc`. Within a node:

    1. edges with ``|estimate| >= keep_factor * tau`` are kept without a test (None: test all);
    2. the least important edges (ascending ``|estimate|``) whose estimates sum to less than
       ``group_fraction * tau`` are removed together if one exact test shows the group's damage
       is below tau (else the first half of the group is tried, and so on);
    3. the rest, in ascending ``|estimate|``, get ACDC's exact per-edge test.

    Every removal is verified by exact patching (a group as a whole); only keeping can be
    decided by the estimate. Scores: the measured change for single tests, the estimate for
    edges decided in a group or kept untested.
    """
    if estimates.shape != (model.graph.n_edges,):
        raise AcdcError(f"expected {model.graph.n_edges} estimates, got {tuple(estimates.shape)}")
    pr = _Pruner(model, batches, metric, ablation, tau, abs_value=abs_value, speculate=speculate,
                 checkpoint=checkpoint, checkpoint_every=checkpoint_every, callback=callback,
                 max_tested=max_tested, mem_budget_mb=mem_budget_mb, progress=progress,
                 estimates=estimates.detach().float().cpu(), keep_factor=keep_factor,
                 group_fraction=group_fraction, label="acdc-guided")
    result = pr.run()
    result.info["group_removals"] = pr.info_groups
    result.info["kept_untested"] = int((~result.tested & result.keep).sum())
    return result
