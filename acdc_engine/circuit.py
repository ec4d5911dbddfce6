"""The :class:`Circuit`: a set of kept edges of a :class:`~acdc_engine.graph.Graph`, with scores.

A circuit is chosen from per-edge scores (:meth:`Circuit.top`, :meth:`Circuit.above`: the top-n
edges by ``|score|`` or every edge with ``|score| >= threshold``), then edges that are not on a
path from ``input`` to ``logits`` through kept edges are dropped (:func:`prune_dead`: they cannot
carry the behaviour).

Forms it takes, all from this one type:
    ``circuit.keep``            ``[n_edges]`` bool in graph order (what selection produces)
    ``circuit.mask()``          the dense ``[n_writers, n_readers]`` mask patched runs read
    ``circuit.nx``              a networkx ``MultiDiGraph`` of the kept edges (the user's view)
    ``circuit.save(path)``      node-link JSON (``circuit.json``), read back by :meth:`load`

On disk and in networkx an edge ``a0.1->a2.3<q>`` is ``(a0.1, a2.3, key="q")`` with attributes
``score``, ``kind`` and ``name``; edges into MLPs and the logits have key and kind ``"resid"``.
Graph attributes are :attr:`Circuit.attrs` (model, task, method, metric, ablation,
faithfulness, ...) plus the graph's shape (``n_layers, n_heads, parallel, attn_only``) and sizes.
Files written before the shape was recorded are read onto the smallest graph with their
``n_edges_total`` (:meth:`Graph.infer`), or onto the graph passed in.

A circuit of a position-aware graph keeps split edges (``a0.1->m2@END``): in networkx their
key is ``kind@position`` and they carry a ``pos`` attribute; :meth:`Circuit.at` is the circuit
at one position group and :meth:`Circuit.unsplit` the edges kept at any group (scores summed:
first-order scores of the parts add up to the whole edge's), both on the unsplit graph.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import networkx as nx
import torch

from .errors import AcdcError
from .graph import Edge, Graph, Keep, Mask, Scores, edge_name, parse_node

__all__ = ["Circuit", "select", "prune_dead", "node_link_json", "save_node_link"]


def node_link_json(G: nx.Graph) -> dict:
    """A circuit's networkx graph as node-link JSON (networkx's, edges under ``edges``): the
    ``circuit.json`` of a run, component or feature level."""
    return nx.node_link_data(G, edges="edges")


def save_node_link(G: nx.Graph, path: str | Path) -> Path:
    """Write :func:`node_link_json` of ``G`` to ``path`` (folders made); the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(node_link_json(G), indent=1, default=str))
    return path


def select(graph: Graph, scores: Scores, *, n_edges: int | None = None,
           threshold: float | None = None, absolute: bool = True) -> Keep:
    """Bool per edge: the top ``n_edges`` by score, or those with score >= ``threshold``."""
    if (n_edges is None) == (threshold is None):
        raise AcdcError("choose the circuit by exactly one of n_edges or threshold")
    if scores.shape != (graph.n_edges,):
        raise AcdcError(f"expected {graph.n_edges} scores, got {tuple(scores.shape)}")
    s = scores.abs() if absolute else scores
    s = torch.nan_to_num(s, nan=-float("inf"))
    if n_edges is not None:
        if not 0 <= n_edges <= graph.n_edges:
            raise AcdcError(f"n_edges must be between 0 and {graph.n_edges}, got {n_edges}")
        keep = torch.zeros(graph.n_edges, dtype=torch.bool)
        keep[torch.topk(s, n_edges, sorted=False).indices] = True
        return keep
    return s >= threshold


def prune_dead(graph: Graph, keep: Keep) -> Keep:
    """Drop kept edges that are not on an input-to-logits path of kept edges."""
    w, r = graph.coords
    dst_node = torch.tensor(graph.slot_node)
    src = w[keep]  # writer index == node index (writers come first in graph.nodes)
    dst = dst_node[r[keep]]
    n = len(graph.nodes)
    fwd = torch.zeros(n, dtype=torch.bool)
    fwd[0] = True
    bwd = torch.zeros(n, dtype=torch.bool)
    bwd[n - 1] = True
    order = torch.argsort(dst, stable=True)  # edges sorted by destination (topological)
    for i in order.tolist():
        if fwd[src[i]]:
            fwd[dst[i]] = True
    for i in order.flip(0).tolist():
        if bwd[dst[i]]:
            bwd[src[i]] = True
    alive = fwd[src] & bwd[dst]
    out = keep.clone()
    out[keep.nonzero()[:, 0]] = alive
    return out


@dataclass
class Circuit:
    """Kept edges of ``graph`` (``keep``), the scores they were chosen by, and attributes."""

    graph: Graph
    keep: Keep
    scores: Scores | None = None
    attrs: dict = field(default_factory=dict)

    def __post_init__(self):
        self.keep = torch.as_tensor(self.keep, dtype=torch.bool).cpu()
        if self.keep.shape != (self.graph.n_edges,):
            raise AcdcError(f"a circuit of this graph needs {self.graph.n_edges} keep flags, "
                            f"got {tuple(self.keep.shape)}")
        if self.scores is not None:
            self.scores = self.scores.detach().float().cpu()

    # ----- construction ----------------------------------------------------------------------
    @classmethod
    def top(cls, graph: Graph, scores: Scores, n_edges: int, **attrs) -> Circuit:
        """The top ``n_edges`` by ``|score|``, dead ends pruned."""
        return cls(graph, prune_dead(graph, select(graph, scores, n_edges=n_edges)), scores,
                   attrs)

    @classmethod
    def above(cls, graph: Graph, scores: Scores, threshold: float, **attrs) -> Circuit:
        """Every edge with ``|score| >= threshold``, dead ends pruned."""
        return cls(graph, prune_dead(graph, select(graph, scores, threshold=threshold)), scores,
                   attrs)

    @classmethod
    def from_edges(cls, graph: Graph, names, scores: Scores | None = None, **attrs) -> Circuit:
        """The circuit keeping the named edges (no pruning)."""
        names = set(names)
        unknown = names - set(graph.edge_index)
        if unknown:
            raise AcdcError(f"{len(unknown)} edge(s) this graph does not have: "
                            f"{sorted(unknown)[:5]}")
        keep = torch.zeros(graph.n_edges, dtype=torch.bool)
        keep[[graph.edge_index[n] for n in names]] = True
        return cls(graph, keep, scores, attrs)

    # ----- views -------------------------------------------------------------------------------
    @property
    def edges(self) -> list[Edge]:
        """The kept edges, in graph order."""
        return [self.graph.edges[i] for i in self.keep.nonzero()[:, 0].tolist()]

    @property
    def edge_names(self) -> list[str]:
        return [e.name for e in self.edges]

    @property
    def nodes(self) -> list[str]:
        """Names of the nodes the kept edges touch, in topological order."""
        touched = {n.name for e in self.edges for n in (e.src, e.dst)}
        return [n.name for n in self.graph.nodes if n.name in touched]

    def number_of_edges(self) -> int:
        return int(self.keep.sum())

    def number_of_nodes(self) -> int:
        return len(self.nodes)

    def score(self, edge: str | Edge) -> float | None:
        if self.scores is None:
            return None
        name = edge if isinstance(edge, str) else edge.name
        return float(self.scores[self.graph.edge_index[name]])

    def mask(self, device=None, dtype=torch.float32) -> Mask:
        """The dense keep mask ``[n_writers, n_readers]`` for patched runs
        (``[..., n_groups]`` in a position-aware graph)."""
        return self.graph.to_dense(self.keep.to(dtype)).to(device)

    # ----- positions -------------------------------------------------------------------------
    def _groups(self, t: torch.Tensor) -> torch.Tensor:
        g = self.graph
        if not g.positions:
            raise AcdcError("this circuit's graph has no positions (discover with --positions)")
        return t.view(g.n_groups, g.base.n_edges)

    def at(self, position: str) -> Circuit:
        """The edges kept at position group ``position``, on the unsplit graph."""
        g = self.graph
        if position not in g.positions:
            raise AcdcError(f"no position {position!r}; the circuit's are "
                            f"{', '.join(g.positions)}")
        k = g.positions.index(position)
        scores = None if self.scores is None else self._groups(self.scores)[k]
        return Circuit(g.base, self._groups(self.keep)[k], scores,
                       {**self.attrs, "position": position})

    def unsplit(self) -> Circuit:
        """Every edge kept at some position group, with its scores summed over the groups
        (NaN-free sum), on the unsplit graph."""
        scores = None if self.scores is None else torch.nansum(self._groups(self.scores), 0)
        return Circuit(self.graph.base, self._groups(self.keep).any(0), scores,
                       {**self.attrs, "positions": ",".join(self.graph.positions)})

    def positions_used(self) -> list[tuple[str, int]]:
        """``(position group, kept edges there)`` for the groups with kept edges, in order."""
        counts = self._groups(self.keep).sum(1).tolist()
        return [(p, int(n)) for p, n in zip(self.graph.positions, counts) if n]

    # ----- networkx and JSON -----------------------------------------------------------------
    @cached_property
    def nx(self) -> nx.MultiDiGraph:
        """The kept edges as a networkx ``MultiDiGraph`` (computed once; treat as read-only)."""
        return self.to_networkx()

    def to_networkx(self) -> nx.MultiDiGraph:
        G = nx.MultiDiGraph()
        for i in self.keep.nonzero()[:, 0].tolist():
            e = self.graph.edges[i]
            for node in (e.src, e.dst):
                if node.name not in G:
                    G.add_node(node.name, kind=node.kind.value, layer=node.layer,
                               head=-1 if node.head is None else node.head)
            kind = e.kind.value or "resid"
            score = None if self.scores is None else float(self.scores[i])
            extra = {} if e.pos is None else {"pos": e.pos}
            G.add_edge(e.src.name, e.dst.name, key=kind if e.pos is None else f"{kind}@{e.pos}",
                       kind=kind, name=e.name, score=score, **extra)
        G.graph.update({k: v for k, v in self.attrs.items() if v is not None})
        G.graph.update(self.graph.shape())
        G.graph.update(n_edges=G.number_of_edges(), n_nodes=G.number_of_nodes(),
                       n_edges_total=self.graph.n_edges)
        return G

    @classmethod
    def from_networkx(cls, G: nx.MultiDiGraph, graph: Graph | None = None) -> Circuit:
        """The circuit of a networkx graph in :meth:`to_networkx`'s form (edge attribute
        ``name``, or keys ``q/k/v/resid``), on ``graph`` or the graph its attributes record."""
        graph = graph or _graph_of(G)
        names, scores = [], {}
        for u, v, key, d in G.edges(keys=True, data=True):
            kind, _, pos = str(key).partition("@")
            name = d.get("name") or edge_name(u, v, kind, pos or None)
            names.append(name)
            if d.get("score") is not None:
                scores[name] = float(d["score"])
        total = G.graph.get("n_edges_total")
        if total is not None and int(total) != graph.n_edges:
            raise AcdcError(f"the circuits come from different graphs ({total} edges; this "
                            f"graph has {graph.n_edges})")
        s = None
        if scores:
            s = torch.full((graph.n_edges,), float("nan"))
            for name, v in scores.items():
                if name in graph.edge_index:
                    s[graph.edge_index[name]] = v
        attrs = {k: v for k, v in G.graph.items() if k not in _DERIVED}
        return cls.from_edges(graph, names, s, **attrs)

    def to_json(self) -> dict:
        return node_link_json(self.to_networkx())

    def save(self, path: str | Path) -> Path:
        return save_node_link(self.to_networkx(), path)

    @classmethod
    def load(cls, path: str | Path, graph: Graph | None = None) -> Circuit:
        """Read a ``circuit.json``; a file that is not a circuit is an error naming it."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise AcdcError(f"cannot read circuit {path}: {e}") from None
        if not (isinstance(data, dict) and isinstance(data.get("nodes"), list)
                and isinstance(data.get("edges"), list)):
            raise AcdcError(f"{path} is not a circuit file (expected node-link JSON with "
                            "'nodes' and 'edges', as circuit.json is written)")
        try:
            G = nx.node_link_graph(data, edges="edges")
            return cls.from_networkx(G, graph)
        except (KeyError, ValueError, TypeError) as e:
            raise AcdcError(f"{path} is not a readable circuit: {e}") from None

    def summary(self) -> str:
        where = ""
        if self.graph.positions:
            used = self.positions_used()
            where = " at positions " + (", ".join(f"{p} ({n})" for p, n in used) or "none")
        return (f"{self.number_of_edges()} of {self.graph.n_edges} edges, "
                f"{self.number_of_nodes()} nodes{where}")


_DERIVED = frozenset({"n_edges", "n_nodes", "n_edges_total", "n_layers", "n_heads", "parallel",
                      "attn_only", "positions"})


def _graph_of(G: nx.MultiDiGraph) -> Graph:
    """The graph a networkx circuit was cut from: its recorded shape, else inferred from its
    edge total (files written before shapes were recorded)."""
    if "n_layers" in G.graph and "n_heads" in G.graph:
        return Graph.from_shape(G.graph)
    layers, heads, has_mlp = 0, 0, False
    for name in G.nodes:
        kind, layer, head = parse_node(name)
        if layer is not None:
            layers = max(layers, layer + 1)
        if head is not None:
            heads = max(heads, head + 1)
        has_mlp |= kind.value == "mlp"
    total = G.graph.get("n_edges_total")
    graph = Graph.infer(int(total), layers, heads, has_mlp or None) if total else None
    if graph is None:
        raise AcdcError("the circuit records neither its graph's shape nor a matching edge "
                        "total; pass the graph (or load it with the model)")
    return graph

