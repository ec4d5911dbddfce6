"""Circuits of whole nodes: the node level of MIB (heads and MLPs kept or removed whole).

At the edge level a circuit is a set of edges. At the **node level** it is a set of nodes
(attention heads and MLPs; the input embeddings and the logits are always in it): a removed
node's output is replaced by its ablated output for every reader, which in the patched forward
is the edge mask that removes every edge out of it. The kept nodes' edges among themselves (and
to the logits) are the circuit's edges (:func:`node_keep`); an edge into a removed node changes
nothing (that node's output is ablated whatever it reads), so leaving it out is exact.

A method's edge scores give node scores by summing each node's outgoing edges
(:func:`node_scores`). For attribution patching this is the node's own attribution, not an
approximation: EAP's edge score is ``(a_u - c_u) . g_v`` and the sum over readers ``v`` is
``(a_u - c_u) . sum_v g_v``, the first-order effect of ablating ``u``'s output for everyone. For
ACDC's or exact patching's edge damages the sum ranks nodes by their edges' total effect, which
is a heuristic (interactions are not additive); the run records which method scored it.

The node-level faithfulness curve (:func:`node_curve`) is MIB's curve over node budgets: the
top ``n`` nodes by ``|score|`` at each budget (percent of the graph's heads and MLPs), dead ends
pruned, the normalized faithfulness against the fraction of nodes kept; CPR and CMD as at the
edge level.
"""

from __future__ import annotations

import torch

from ..circuit import prune_dead
from ..errors import AcdcError
from ..graph import Graph, Keep, Scores
from ..problem import Problem
from .curves import BUDGETS, Curve, evaluate_keeps

__all__ = ["LEVELS", "check_level", "node_scores", "top_nodes", "node_keep", "node_circuits",
           "node_curve", "nodes_kept"]

LEVELS = ("edge", "node", "neuron")
"""The granularities a circuit can be chosen at: edges, whole nodes (heads and MLPs), or heads
and MLP neurons (:mod:`.neuron_level`)."""


def node_scores(graph: Graph, scores: Scores) -> torch.Tensor:
    """``[n_writers]`` float64: each writer node's score, the sum of its outgoing edges' scores
    (NaN scores, edges never tested, count as 0; position-aware edges summed over positions).
    Entry 0, the input embeddings, is always kept whatever its score."""
    if scores.shape != (graph.n_edges,):
        raise AcdcError(f"expected {graph.n_edges} edge scores, got {tuple(scores.shape)}")
    w, _ = graph.coords
    out = torch.zeros(graph.n_writers, dtype=torch.float64)
    out.index_add_(0, w, torch.nan_to_num(scores.double(), nan=0.0))
    return out


def _units(graph: Graph) -> int:
    """The nodes a node-level circuit chooses among: every writer but the input."""
    return graph.n_writers - 1


def top_nodes(graph: Graph, node_score: torch.Tensor, n_nodes: int | None = None, *,
              threshold: float | None = None) -> torch.Tensor:
    """``[n_writers]`` bool: the input and the top ``n_nodes`` other nodes by ``|score|`` (or
    those with ``|score| >= threshold``)."""
    if (n_nodes is None) == (threshold is None):
        raise AcdcError("choose the nodes by exactly one of n_nodes or threshold")
    s = node_score.abs().clone()
    s[0] = -float("inf")  # the input: kept below, never counted
    kept = torch.zeros(graph.n_writers, dtype=torch.bool)
    if n_nodes is not None:
        if not 0 <= n_nodes <= _units(graph):
            raise AcdcError(f"n_nodes must be between 0 and {_units(graph)}, got {n_nodes}")
        kept[torch.topk(s, n_nodes).indices] = True
    else:
        kept = s >= threshold
    kept[0] = True
    return kept


def node_keep(graph: Graph, kept: torch.Tensor) -> Keep:
    """The edges of the node circuit ``kept`` ([n_writers] bool): from a kept node to a kept
    node or to the logits. Its mask ablates exactly the removed nodes' outputs."""
    w, r = graph.coords
    dst = torch.as_tensor(graph.slot_node)[r]  # the reader's node (writers are nodes 0..W-1)
    logits = len(graph.nodes) - 1
    dst_kept = torch.where(dst == logits, True, kept[dst.clamp(max=graph.n_writers - 1)])
    return kept[w] & dst_kept


def nodes_kept(graph: Graph, keep: Keep) -> int:
    """How many heads and MLPs a (pruned) edge circuit keeps: writers with a kept edge out."""
    w, _ = graph.coords
    used = torch.zeros(graph.n_writers, dtype=torch.bool)
    used[w[keep]] = True
    return int(used[1:].sum())


def node_circuits(graph: Graph, node_score: torch.Tensor, budgets=BUDGETS) -> list[Keep]:
    """The pruned edge keep of the top-n node circuit at each budget (percent of nodes)."""
    out, cache = [], {}
    for pct in budgets:
        n = max(1, round(_units(graph) * pct / 100))
        if n not in cache:
            cache[n] = prune_dead(graph, node_keep(graph, top_nodes(graph, node_score, n)))
        out.append(cache[n])
    return out


def node_curve(problem: Problem, scores: Scores, budgets=BUDGETS, *,
               extra: list[torch.Tensor] | None = None,
               progress: bool = True) -> tuple[Curve, list[Keep], list[float]]:
    """:func:`~acdc_engine.evaluation.curves.faithfulness_curve` at the node level: the curve
    over node budgets (``n_edges`` of the curve counts nodes, its total the graph's heads and
    MLPs), the pruned edge keeps per budget, and the values of ``extra`` dense masks."""
    g = problem.graph
    keeps = node_circuits(g, node_scores(g, scores), budgets)
    values, extra_values, full, empty = evaluate_keeps(problem, keeps, extra, progress,
                                                       "node faithfulness curve")
    curve = Curve(tuple(float(b) for b in budgets), tuple(nodes_kept(g, k) for k in keeps),
                  _units(g), tuple(float(v) for v in values), float(full), float(empty),
                  unit="nodes")
    return curve, keeps, extra_values


def check_level(level: str, selection: str | None, n_edges: int | None,
                n_nodes: int | None, threshold: float | None) -> str:
    """The selection a node-level run makes (topk with ``n_nodes``, threshold, else target), or
    a one-line :class:`AcdcError` for options the level does not take; ``n_nodes`` at the edge
    level is refused too. Returns the selection's name."""
    if level not in LEVELS:
        raise AcdcError(f"unknown level {level!r} (known: {', '.join(LEVELS)})")
    if level == "edge":
        if n_nodes is not None:
            raise AcdcError("n_nodes (--nodes) chooses a node-level circuit; add level='node' "
                            "(--level node) or give n_edges")
        return ""
    if n_edges is not None:
        raise AcdcError(f"a {level}-level circuit is sized in units (heads and MLPs, or heads "
                        "and neurons): give n_nodes (--nodes), not n_edges")
    if n_nodes is not None and threshold is not None:
        raise AcdcError("give at most one of n_nodes and threshold")
    if n_nodes is not None and (not isinstance(n_nodes, int) or n_nodes < 0):
        raise AcdcError(f"the number of nodes must be a whole number >= 0, got {n_nodes!r}")
    made = "topk" if n_nodes is not None else "threshold" if threshold is not None else "target"
    if selection not in (None, made):
        raise AcdcError(f"selection {selection!r} works on edges; at the {level} level the "
                        f"circuit is the top units (--nodes), a threshold, or the target search")
    return made
