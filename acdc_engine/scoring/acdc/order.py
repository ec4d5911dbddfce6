"""ACDC's shared definition: the order edges are tested in, which nodes are still alive, and
how much worse a removal made the behaviour.

The reference (:mod:`.reference`) and the fast engine (:mod:`.engine`, :mod:`.driver`) both
use these, so they agree by construction on everything but the arithmetic of a test::

    for v in nodes, from the logits backwards (reverse topological order):
        if v has no path of kept edges to the logits:       # a dead node: its inputs cannot
            remove every edge into v (score 0, untested)    # matter, as in ACDC
            continue
        for e in the edges into v (q, then k, then v inputs for a head; within an input the
                                   writers nearest to v first):
            m_new = m(M without e)                           # exact patching
            if damage(m_new, m_cur) < tau:  M = M without e;  m_cur = m_new
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ...graph import Graph
from ...metrics import Metric

__all__ = ["visit_order", "Topology", "damage_fn"]


def visit_order(g: Graph) -> list[tuple[int, list[int]]]:
    """``(node index, edge ids in test order)`` for every node that has inputs, logits first.

    Nodes are visited in reverse topological order (logits, last MLP, last layer's heads from
    the highest head down, ...). A head's edges come q first, then k, then v; within one input,
    the nearest writer first (reverse writer order). In a position-aware graph each edge is
    tested at every position group in turn (edge ids of the split graph).
    """
    if g.positions:
        n = g.base.n_edges
        return [(node, [e + k * n for e in edges for k in range(g.n_groups)])
                for node, edges in visit_order(g.base)]
    start = g.slot_starts
    out = []
    for node_idx in range(len(g.nodes) - 1, 0, -1):
        edges = []
        for slot in g.node_slots(node_idx):
            edges += [start[slot] + w for w in range(g.upstream_count(slot) - 1, -1, -1)]
        out.append((node_idx, edges))
    return out


class Topology:
    """Node-level reachability over kept edges (numpy; the graph is small).

    ``keep`` arguments are ``[n_writers, n_readers]`` bool (the patching layout); node ids are
    indices in :attr:`Graph.nodes`, whose first ``n_writers`` are the writers.
    """

    def __init__(self, g: Graph):
        self.g = g
        self.W, self.N = g.n_writers, len(g.nodes)
        self.slot_node = np.asarray(g.slot_node, dtype=np.int64)  # [R] node reading the slot
        self.S = np.zeros((g.n_readers, self.N), dtype=np.float32)  # [R, N] slot -> node
        self.S[np.arange(g.n_readers), self.slot_node] = 1
        self.valid = g.valid.numpy()  # [W, R]

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


def damage_fn(metric: Metric, abs_value: bool) -> Callable[[float, float], float]:
    """``damage(m_new, m_cur)``: how much worse the behaviour got (an edge goes when < tau).

    ``m_new - m_cur`` where lower is better (KL divergence, NLL), ``m_cur - m_new`` where
    higher is better (logit difference), ``|m_new - m_cur|`` with ``abs_value``. A removal that
    improves the metric always passes (unless ``abs_value``).
    """
    if abs_value:
        return lambda new, cur: abs(new - cur)
    if metric.higher_is_better:
        return lambda new, cur: cur - new
    return lambda new, cur: new - cur
