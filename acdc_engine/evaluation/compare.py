"""Comparing two circuits: overlap, what is only in one, and how the scores moved.

The usual case is a base model and its fine-tuned version (same architecture, so the same
graph)::

    from acdc_engine.evaluation.compare import compare_circuits
    diff = compare_circuits(result_base.circuit, result_tuned.circuit)
    print(diff.summary("base", "tuned"))

Whether each circuit still works in the other model is :func:`acdc_engine.api.cross_faithfulness`
(it runs the models). Circuits of different tasks, metrics or budgets can be compared, but the
comparison says so (:attr:`Comparison.warnings`): their differences need not be the model's.

Position-aware circuits compare edge by split edge (``a0.1->m2@END``), and
:attr:`Comparison.positions` counts each position group's edges in both. A position-aware
circuit against an unsplit one of the same model shape is compared unsplit
(:meth:`Circuit.unsplit`: an edge kept at any position), with a warning saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx
from scipy.stats import spearmanr

from ..circuit import Circuit
from ..errors import AcdcError

__all__ = ["Comparison", "compare_circuits", "as_circuit"]

#: Circuit attributes that must agree for a comparison to be about the models alone.
SETTINGS = ("task", "metric", "ablation", "method")


def as_circuit(c: Circuit | nx.MultiDiGraph | str | Path) -> Circuit:
    """A :class:`Circuit` from a circuit, its networkx form or a circuit.json path."""
    if isinstance(c, Circuit):
        return c
    if isinstance(c, nx.Graph):
        return Circuit.from_networkx(c)
    return Circuit.load(c)


@dataclass
class Comparison:
    """Edges and nodes of circuit ``a`` against circuit ``b``.

    ``largest_changes`` lists ``(edge, score in a, score in b)`` over the union of the edges,
    largest change first; a score is None where the edge is not in that circuit."""

    shared: list[str]
    only_a: list[str]
    only_b: list[str]
    nodes_only_a: list[str]
    nodes_only_b: list[str]
    edge_jaccard: float
    node_jaccard: float
    score_spearman: float | None  # on the shared edges (None if fewer than 3)
    largest_changes: list[tuple[str, float | None, float | None]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    positions: list[tuple[str, int, int, int]] = field(default_factory=list)
    """Position-aware circuits: ``(group, edges in a, edges in b, shared)`` per group with
    edges."""

    def summary(self, name_a: str = "A", name_b: str = "B", top: int = 10) -> str:
        lines = [
            f"edges: {len(self.shared)} shared, {len(self.only_a)} only in {name_a}, "
            f"{len(self.only_b)} only in {name_b} (Jaccard {self.edge_jaccard:.3f})",
            f"nodes: Jaccard {self.node_jaccard:.3f}; only in {name_a}: "
            f"{', '.join(self.nodes_only_a) or '-'}; only in {name_b}: "
            f"{', '.join(self.nodes_only_b) or '-'}",
        ]
        if self.positions:
            lines.append("by position: " + "; ".join(
                f"{p} {na} in {name_a}, {nb} in {name_b}, {ns} shared"
                for p, na, nb, ns in self.positions))
        if self.score_spearman is not None:
            lines.append(f"score rank correlation on shared edges: {self.score_spearman:.3f}")
        if self.largest_changes and top:
            lines.append(f"largest score changes ({name_a} -> {name_b}):")
            fmt = lambda v: "absent" if v is None else f"{v:+.4g}"  # noqa: E731
            lines += [f"  {e}: {fmt(sa)} -> {fmt(sb)}" for e, sa, sb in
                      self.largest_changes[:top]]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def _scores(c: Circuit) -> dict[str, float | None]:
    return {e: c.score(e) for e in c.edge_names}


def compare_circuits(a, b) -> Comparison:
    """Overlap of two circuits (Circuit, networkx or circuit.json path) and how the shared
    edges' scores moved. Circuits of different graphs are refused."""
    a, b = as_circuit(a), as_circuit(b)
    warn = []
    if a.graph.positions != b.graph.positions and a.graph.base == b.graph.base:
        warn.append("one circuit is split by position ("
                    f"{','.join(a.graph.positions or b.graph.positions)}) and the other is not "
                    "(or differently): compared unsplit, an edge kept at any position")
        a = a.unsplit() if a.graph.positions else a
        b = b.unsplit() if b.graph.positions else b
    if a.graph.n_edges != b.graph.n_edges or a.graph != b.graph:
        raise AcdcError(f"the circuits come from different graphs ({a.graph.n_edges} vs "
                        f"{b.graph.n_edges} edges); compare circuits of models with the same "
                        "architecture")
    warn += [f"the circuits differ in {k} ({a.attrs.get(k)!r} vs {b.attrs.get(k)!r})"
             for k in SETTINGS if a.attrs.get(k) is not None and b.attrs.get(k) is not None
            and a.attrs.get(k) != b.attrs.get(k)]
    ta, tb = a.attrs.get("n_edges_requested"), b.attrs.get("n_edges_requested")
    if ta != tb and (ta or tb):
        warn.append(f"the circuits were cut at different budgets ({ta} vs {tb} edges)")
    ea, eb = _scores(a), _scores(b)
    shared = sorted(ea.keys() & eb.keys())
    union = ea.keys() | eb.keys()
    na, nb = set(a.nodes), set(b.nodes)
    rho = None
    if len(shared) >= 3 and all(ea[e] is not None and eb[e] is not None for e in shared):
        rho = float(spearmanr([ea[e] for e in shared], [eb[e] for e in shared]).statistic)
    changes = sorted(((e, ea.get(e), eb.get(e)) for e in union),
                     key=lambda t: -abs((t[2] or 0.0) - (t[1] or 0.0)))
    by_pos = []
    if a.graph.positions:
        ka, kb = (c.keep.view(c.graph.n_groups, -1) for c in (a, b))
        by_pos = [(p, int(ka[i].sum()), int(kb[i].sum()), int((ka[i] & kb[i]).sum()))
                  for i, p in enumerate(a.graph.positions) if bool((ka[i] | kb[i]).any())]
    return Comparison(
        shared=shared, only_a=sorted(ea.keys() - eb.keys()), only_b=sorted(eb.keys() - ea.keys()),
        nodes_only_a=sorted(na - nb), nodes_only_b=sorted(nb - na),
        edge_jaccard=len(shared) / len(union) if union else 1.0,
        node_jaccard=len(na & nb) / len(na | nb) if na | nb else 1.0,
        score_spearman=rho, largest_changes=changes, warnings=warn, positions=by_pos,
    )
