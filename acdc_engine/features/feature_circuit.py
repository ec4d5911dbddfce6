"""A circuit of features: dictionary features and error nodes per layer, and the edges between
them, as networkx and ``circuit.json``.

Node names (one vocabulary with the component level's ``a1.2``, ``m0``):

    L{layer}.f{feature}      a transcoder feature of layer ``layer``
    L{layer}.err             layer ``layer``'s error node (what the transcoders miss)
    ...@{pos}                the same node at token position ``pos`` (per-position circuits)
    metric                   the task's metric (the sink)

A :class:`FeatureCircuit` has the forms a component :class:`~acdc_engine.circuit.Circuit`
has: ``.nx`` (a networkx ``DiGraph``: node attributes ``kind`` (feature, error, metric),
``layer``, ``feature``, ``pos``, ``score``; edge attribute ``weight``; graph attributes
``granularity="features"`` and :attr:`attrs` such as model, task, method, metric,
faithfulness), ``save(path)`` (node-link JSON, the ``circuit.json`` of a run) and
:meth:`load`, :meth:`summary`, :meth:`number_of_nodes`, :meth:`number_of_edges`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import networkx as nx

from ..circuit import node_link_json, save_node_link
from ..errors import AcdcError

__all__ = ["FeatureCircuit", "node_name", "parse_feature_node", "METRIC"]

METRIC = "metric"
"""The sink node's name."""

_NODE = re.compile(r"^L(\d+)\.(?:f(\d+)|(err))(?:@(\d+))?$")


def node_name(layer: int, feature: int | None, pos: int | None = None) -> str:
    """``L{layer}.f{feature}`` (``feature`` None: ``L{layer}.err``), ``@pos`` when given."""
    base = f"L{layer}.err" if feature is None else f"L{layer}.f{feature}"
    return base if pos is None else f"{base}@{pos}"


def parse_feature_node(name: str) -> tuple[int, int | None, int | None]:
    """``(layer, feature or None for an error node, pos or None)`` of a node name."""
    m = _NODE.match(name)
    if m is None:
        raise AcdcError(f"{name!r} is not a feature node name (L<layer>.f<feature>, "
                        "L<layer>.err, optionally @<pos>)")
    return (int(m.group(1)), None if m.group(3) else int(m.group(2)),
            None if m.group(4) is None else int(m.group(4)))


@dataclass
class FeatureCircuit:
    """Kept ``nodes`` (name -> score: the node's attribution-patching effect on the metric)
    and ``edges`` ((upstream, downstream) -> weight; ``downstream`` may be :data:`METRIC`),
    with graph attributes ``attrs``."""

    nodes: dict[str, float]
    edges: dict[tuple[str, str], float] = field(default_factory=dict)
    attrs: dict = field(default_factory=dict)

    @cached_property
    def nx(self) -> nx.DiGraph:
        """The circuit as a networkx ``DiGraph`` (computed once; treat as read-only)."""
        return self.to_networkx()

    def to_networkx(self) -> nx.DiGraph:
        """Nodes with ``kind``, ``layer``, ``feature``, ``pos``, ``score``; edges with
        ``weight``; graph attributes :attr:`attrs`, ``granularity`` and sizes."""
        G = nx.DiGraph()
        for name, score in self.nodes.items():
            layer, feat, pos = parse_feature_node(name)
            G.add_node(name, kind="error" if feat is None else "feature", layer=layer,
                       feature=-1 if feat is None else feat, pos=-1 if pos is None else pos,
                       score=float(score))
        G.add_node(METRIC, kind="metric", layer=-1, feature=-1, pos=-1, score=0.0)
        for (u, v), w in self.edges.items():
            G.add_edge(u, v, weight=float(w))
        G.graph.update({k: v for k, v in self.attrs.items() if v is not None})
        G.graph.update(granularity="features", n_nodes=len(self.nodes),
                       n_edges=len(self.edges))
        return G

    def number_of_nodes(self) -> int:
        """Kept feature and error nodes (the metric node not counted)."""
        return len(self.nodes)

    def number_of_edges(self) -> int:
        """Kept edges (into the metric node included)."""
        return len(self.edges)

    @property
    def features(self) -> list[tuple[int, int]]:
        """``(layer, feature)`` of every kept feature node (positions merged), in order."""
        out = []
        for name in self.nodes:
            layer, feat, _ = parse_feature_node(name)
            if feat is not None and (layer, feat) not in out:
                out.append((layer, feat))
        return out

    def to_json(self) -> dict:
        """Node-link JSON (networkx's, edges under ``edges``), as a component circuit's."""
        return node_link_json(self.to_networkx())

    def save(self, path: str | Path) -> Path:
        """Write ``circuit.json`` (node-link JSON)."""
        return save_node_link(self.to_networkx(), path)

    @classmethod
    def load(cls, path: str | Path) -> FeatureCircuit:
        """Read a feature circuit's ``circuit.json``; anything else is refused naming it."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            G = nx.node_link_graph(data, edges="edges")
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise AcdcError(f"cannot read feature circuit {path}: {e}") from None
        if G.graph.get("granularity") != "features":
            raise AcdcError(f"{path} is not a feature circuit (no granularity=features in its "
                            "graph attributes)")
        nodes = {n: float(d.get("score", 0.0)) for n, d in G.nodes(data=True) if n != METRIC}
        edges = {(u, v): float(d.get("weight", 0.0)) for u, v, d in G.edges(data=True)}
        attrs = {k: v for k, v in G.graph.items()
                 if k not in ("granularity", "n_nodes", "n_edges")}
        return cls(nodes, edges, attrs)

    def summary(self) -> str:
        """One line: sizes and faithfulness where known."""
        n_err = sum(1 for n in self.nodes if n.split("@")[0].endswith(".err"))
        f = self.attrs.get("faithfulness")
        held = "" if f is None else f"; faithfulness {f:.3f}"
        fh = self.attrs.get("faithfulness_held_out")
        held += "" if fh is None else f" (held-out {fh:.3f})"
        return (f"{len(self.nodes) - n_err} features + {n_err} error nodes, "
                f"{len(self.edges)} edges{held}")
