"""The computational graph of a model: its nodes and edges laid out on the writer/reader axes.

Circuit discovery works on the graph whose nodes are a transformer's components and whose edges
say "u writes to the residual stream before v reads it". Nodes, edges and their names are
:mod:`acdc_engine.names`, the one parser and formatter of names (re-exported here, so ``from
acdc_engine.graph import Edge, parse_edge`` works); the aliases :data:`Scores`, :data:`Keep` and
:data:`Mask` type the per-edge and dense tensors that travel between layers.

Tensor layout used by the patching core
    *Writers* are the nodes that write to the residual stream, in topological order:
    ``input, a0.0 .. a0.{H-1}, m0, a1.0, ...``. *Readers* are the input slots that read it:
    for each layer ``q`` of every head, then ``k`` of every head, then ``v``, then the MLP; the
    last reader is ``logits``. An edge mask is a ``[n_writers, n_readers]`` matrix, 1 = keep;
    entries that are not edges (a writer downstream of the reader) are ignored. Scores are one
    float per edge, in :attr:`Graph.edges` order.

GPT-2 small (12 layers, 12 heads) has exactly 32,491 edges under this convention.

Position-aware graphs (:meth:`Graph.with_positions`)
    Every edge is split by the position group of the tokens its signal travels at (its name
    ends with the group, ``a0.1->a2.3<q>@END``: :mod:`acdc_engine.names`; each token's group:
    :mod:`acdc_engine.positions`). The residual stream is per token, so ``u`` at token ``t``
    reaches ``v`` at token ``t`` only; attention moves information between tokens inside a
    head. Edges are position-major (all edges at the first group, then the second, ...), a
    dense mask is ``[n_writers, n_readers, n_groups]``, and :attr:`Graph.coords` repeats the
    unsplit coordinates once per group (topology is the unsplit graph's).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import torch

from .names import (Edge, EdgeKind, Node, NodeKind, check_positions, edge_name, edge_position,
                    node_name, parse_edge, parse_node)

__all__ = ["NodeKind", "EdgeKind", "Node", "Edge", "Graph", "Scores", "Keep", "Mask", "parse_node",
           "parse_edge", "edge_name", "edge_position", "node_name", "check_positions"]

Scores = torch.Tensor
"""``[n_edges]`` float32: one score per edge, in :attr:`Graph.edges` order (NaN = not scored)."""
Keep = torch.Tensor
"""``[n_edges]`` bool: which edges a circuit keeps, in :attr:`Graph.edges` order."""
Mask = torch.Tensor
"""``[n_writers, n_readers]`` float: 1 keeps the edge (writer -> reader slot), 0 removes it
(``[n_writers, n_readers, n_groups]`` in a position-aware graph)."""


@dataclass(frozen=True)
class Graph:
    """The edge graph of a model with ``n_layers`` blocks of ``n_heads`` heads and one MLP.

    ``parallel`` is True for blocks where attention and MLP read the same residual stream
    (GPT-J, GPT-NeoX); ``attn_only`` for models without MLPs (tracr programs, attention-only
    models). ``positions``: the position groups of a position-aware graph (module docstring);
    empty for the usual graph.
    """

    n_layers: int
    n_heads: int
    parallel: bool = False
    attn_only: bool = False
    positions: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "positions", check_positions(self.positions))

    def with_positions(self, positions) -> Graph:
        """This graph with every edge split by the position groups ``positions`` (names); one
        shared object per shape and positions, so its edge tables are built once."""
        return _shared(self.n_layers, self.n_heads, self.parallel, self.attn_only,
                       tuple(str(p) for p in positions))

    @cached_property
    def base(self) -> Graph:
        """The graph without positions (itself when it has none)."""
        return _shared(self.n_layers, self.n_heads, self.parallel, self.attn_only, ()) \
            if self.positions else self

    @property
    def n_groups(self) -> int:
        """Position groups: 1 for a graph without positions."""
        return max(1, len(self.positions))

    @property
    def dense_shape(self) -> tuple[int, ...]:
        """The shape of a dense mask: ``(W, R)``, or ``(W, R, n_groups)`` with positions."""
        return ((self.n_writers, self.n_readers, self.n_groups) if self.positions
                else (self.n_writers, self.n_readers))

    def full_mask(self, fill: float = 1.0, **kw) -> Mask:
        """A dense mask filled with ``fill`` (1: the full model; 0: the empty circuit);
        ``kw`` go to ``torch.full`` (device, dtype, requires_grad)."""
        return torch.full(self.dense_shape, float(fill), **kw)

    def dense_index(self, edge: int) -> tuple[int, ...]:
        """Where edge ``edge`` (an index into :attr:`edges`) sits in a dense mask."""
        w, r = self.coords
        return ((int(w[edge]), int(r[edge]), edge // self.base.n_edges) if self.positions
                else (int(w[edge]), int(r[edge])))

    # ----- nodes ---------------------------------------------------------------------------
    @cached_property
    def writers(self) -> list[Node]:
        """Nodes that write to the residual stream, in topological order (the writer axis)."""
        out = [Node(node_name(NodeKind.INPUT), NodeKind.INPUT, -1)]
        for layer in range(self.n_layers):
            out += [Node(node_name(NodeKind.ATTN, layer, h), NodeKind.ATTN, layer, h)
                    for h in range(self.n_heads)]
            if not self.attn_only:
                out.append(Node(node_name(NodeKind.MLP, layer), NodeKind.MLP, layer))
        return out

    @cached_property
    def nodes(self) -> list[Node]:
        """Every node, in topological order: the writers, then ``logits``."""
        return [*self.writers, Node(node_name(NodeKind.LOGITS), NodeKind.LOGITS, self.n_layers)]

    @cached_property
    def node_index(self) -> dict[str, Node]:
        return {n.name: n for n in self.nodes}

    def node(self, name: str) -> Node:
        """The node called ``name``; a clear KeyError names the valid forms otherwise."""
        try:
            return self.node_index[name]
        except KeyError:
            raise KeyError(
                f"no node {name!r} in a graph with {self.n_layers} layers and {self.n_heads} "
                "heads (nodes are 'input', 'a{layer}.{head}', 'm{layer}', 'logits')"
            ) from None

    @property
    def per_layer(self) -> int:
        """Writers per layer: the heads plus the MLP (if any)."""
        return self.n_heads + (0 if self.attn_only else 1)

    @property
    def n_writers(self) -> int:
        return len(self.writers)

    @property
    def readers_per_layer(self) -> int:
        """Reader slots per layer: q, k, v of every head, plus the MLP (if any)."""
        return 3 * self.n_heads + (0 if self.attn_only else 1)

    @property
    def n_readers(self) -> int:
        return self.n_layers * self.readers_per_layer + 1

    # ----- the writer/reader axes -----------------------------------------------------------
    def writer_index(self, node: Node | str) -> int:
        node = self.node(node) if isinstance(node, str) else node
        if node.kind is NodeKind.INPUT:
            return 0
        if node.kind is NodeKind.ATTN:
            return 1 + node.layer * self.per_layer + node.head
        if node.kind is NodeKind.MLP:
            return 1 + node.layer * self.per_layer + self.n_heads
        raise ValueError("logits write nothing to the residual stream")

    def attn_upstream(self, layer: int) -> int:
        """How many writers (a prefix of the writer axis) the heads of ``layer`` read."""
        return 1 + layer * self.per_layer

    def mlp_upstream(self, layer: int) -> int:
        """How many writers the MLP of ``layer`` reads."""
        return self.attn_upstream(layer) + (0 if self.parallel else self.n_heads)

    def attn_slots(self, layer: int) -> slice:
        """Reader columns of layer ``layer``'s heads: q of each head, then k, then v."""
        start = layer * self.readers_per_layer
        return slice(start, start + 3 * self.n_heads)

    def mlp_slot(self, layer: int) -> int:
        if self.attn_only:
            raise ValueError("an attention-only model has no MLP")
        return self.attn_slots(layer).stop

    @property
    def logits_slot(self) -> int:
        return self.n_readers - 1

    def reader_slot(self, node: Node | str, kind: EdgeKind = EdgeKind.RESID) -> int:
        node = self.node(node) if isinstance(node, str) else node
        if node.kind is NodeKind.ATTN:
            if kind is EdgeKind.RESID:
                raise ValueError(f"edges into head {node.name} need a kind: q, k or v")
            offset = {EdgeKind.Q: 0, EdgeKind.K: 1, EdgeKind.V: 2}[kind] * self.n_heads
            return self.attn_slots(node.layer).start + offset + node.head
        if kind is not EdgeKind.RESID:
            raise ValueError(f"{node.name} has a single input; <{kind.value}> is only for heads")
        if node.kind is NodeKind.MLP:
            return self.mlp_slot(node.layer)
        if node.kind is NodeKind.LOGITS:
            return self.logits_slot
        raise ValueError("the input node reads nothing")

    def upstream_count(self, slot: int) -> int:
        """How many writers (a prefix) reader ``slot`` reads."""
        if slot == self.logits_slot:
            return self.n_writers
        layer, offset = divmod(slot, self.readers_per_layer)
        return self.attn_upstream(layer) if offset < 3 * self.n_heads else self.mlp_upstream(layer)

    def readers(self) -> list[tuple[Node, EdgeKind]]:
        """The reader axis: (node, input kind) for every reader slot, in order."""
        out: list[tuple[Node, EdgeKind]] = []
        for layer in range(self.n_layers):
            heads = [self.node(node_name(NodeKind.ATTN, layer, h)) for h in range(self.n_heads)]
            for kind in (EdgeKind.Q, EdgeKind.K, EdgeKind.V):
                out += [(h, kind) for h in heads]
            if not self.attn_only:
                out.append((self.node(node_name(NodeKind.MLP, layer)), EdgeKind.RESID))
        out.append((self.node(node_name(NodeKind.LOGITS)), EdgeKind.RESID))
        return out

    # ----- edges ----------------------------------------------------------------------------
    @cached_property
    def edges(self) -> list[Edge]:
        """Every edge, ordered by reader slot, then by writer (with positions: by position
        group first, then as the unsplit graph)."""
        if self.positions:
            return [Edge(e.src, e.dst, e.kind, p) for p in self.positions
                    for e in self.base.edges]
        out = []
        for slot, (dst, kind) in enumerate(self.readers()):
            out += [Edge(src, dst, kind) for src in self.writers[: self.upstream_count(slot)]]
        return out

    @property
    def n_edges(self) -> int:
        return len(self.edges)

    @cached_property
    def edge_index(self) -> dict[str, int]:
        """Edge name -> position in :attr:`edges`."""
        return {e.name: i for i, e in enumerate(self.edges)}

    def edge(self, name: str) -> Edge:
        if name.strip() not in self.edge_index:  # every name in it parses (names.py)
            at = (f", at a position: '...@{self.positions[0]}' (positions "
                  f"{', '.join(self.positions[:8])})" if self.positions else "")
            raise KeyError(
                f"no edge {name!r} in this graph (edges look like 'input->m0', "
                f"'a0.1->a2.3<q>'{at})")
        return self.edges[self.edge_index[name.strip()]]

    @cached_property
    def coords(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(writer index, reader slot) of every edge, as two LongTensors of length n_edges
        (with positions: the unsplit graph's, repeated once per group; see :attr:`group`)."""
        if self.positions:
            w, r = self.base.coords
            return w.repeat(self.n_groups), r.repeat(self.n_groups)
        w, r = [], []
        for slot in range(self.n_readers):
            n = self.upstream_count(slot)
            w += range(n)
            r += [slot] * n
        return torch.tensor(w, dtype=torch.long), torch.tensor(r, dtype=torch.long)

    @cached_property
    def group(self) -> torch.Tensor:
        """Per edge, the index of its position group (all 0 without positions)."""
        return torch.arange(self.n_groups).repeat_interleave(self.base.n_edges)

    @cached_property
    def valid(self) -> torch.Tensor:
        """``[n_writers, n_readers]`` bool: which entries of a dense mask are edges."""
        m = torch.zeros(self.n_writers, self.n_readers, dtype=torch.bool)
        m[self.coords] = True
        return m

    def _dense_coords(self, device) -> tuple[torch.Tensor, ...]:
        w, r = self.coords
        out = (w, r, self.group) if self.positions else (w, r)
        return tuple(t.to(device) for t in out)

    def to_dense(self, per_edge: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
        """Scatter a per-edge vector into a dense ``[n_writers, n_readers]`` matrix
        (``[..., n_groups]`` with positions)."""
        if per_edge.shape != (self.n_edges,):
            raise ValueError(f"expected {self.n_edges} values, one per edge, got {per_edge.shape}")
        dense = torch.full(self.dense_shape, fill, dtype=per_edge.dtype, device=per_edge.device)
        dense[self._dense_coords(per_edge.device)] = per_edge
        return dense

    def from_dense(self, dense: torch.Tensor) -> torch.Tensor:
        """Gather the per-edge vector from a dense mask (:attr:`dense_shape`)."""
        if tuple(dense.shape) != self.dense_shape:
            raise ValueError(f"expected a dense mask of shape {self.dense_shape}, got "
                             f"{tuple(dense.shape)}")
        return dense[self._dense_coords(dense.device)]

    def mask_from_edges(self, keep: torch.Tensor | list[str] | set[str]) -> torch.Tensor:
        """A dense float mask from a per-edge bool vector or a collection of edge names."""
        if not isinstance(keep, torch.Tensor):
            names = set(keep)
            unknown = names - set(self.edge_index)
            if unknown:
                raise KeyError(f"unknown edges: {sorted(unknown)[:5]}")
            keep = torch.tensor([e.name in names for e in self.edges])
        return self.to_dense(keep.float())

    def node_slots(self, node: Node | str | int) -> list[int]:
        """Reader slots of a node: q, k, v for a head; one for an MLP or the logits; none for
        the input. ``node`` may be its index in :attr:`nodes`."""
        if isinstance(node, int):
            node = self.nodes[node]
        node = self.node(node) if isinstance(node, str) else node
        if node.kind is NodeKind.ATTN:
            return [self.reader_slot(node, k) for k in (EdgeKind.Q, EdgeKind.K, EdgeKind.V)]
        if node.kind is NodeKind.INPUT:
            return []
        return [self.reader_slot(node)]

    @cached_property
    def slot_node(self) -> list[int]:
        """Per reader slot: the index in :attr:`nodes` of the node that reads through it."""
        index = {n.name: i for i, n in enumerate(self.nodes)}
        return [index[node.name] for node, _ in self.readers()]

    @cached_property
    def slot_starts(self) -> list[int]:
        """Per reader slot: the id of its first edge (edges are ordered by slot, then writer)."""
        out, n = [], 0
        for slot in range(self.n_readers):
            out.append(n)
            n += self.upstream_count(slot)
        return out

    # ----- shape, for files ----------------------------------------------------------------
    def shape(self) -> dict:
        """What identifies the graph: ``n_layers, n_heads, parallel, attn_only`` and, in a
        position-aware graph, ``positions`` (comma-separated); circuit files record it, so a
        circuit can be read back onto its graph."""
        out = {"n_layers": self.n_layers, "n_heads": self.n_heads, "parallel": self.parallel,
               "attn_only": self.attn_only}
        if self.positions:
            out["positions"] = ",".join(self.positions)
        return out

    @classmethod
    def from_shape(cls, d: dict) -> Graph:
        pos = d.get("positions") or ()
        pos = tuple(p for p in pos.split(",") if p) if isinstance(pos, str) else tuple(pos)
        return cls(int(d["n_layers"]), int(d["n_heads"]), parallel=_flag(d.get("parallel")),
                   attn_only=_flag(d.get("attn_only")), positions=pos)

    @classmethod
    def infer(cls, n_edges_total: int, n_layers_min: int = 1, n_heads_min: int = 1,
              has_mlp: bool | None = None) -> Graph | None:
        """The smallest graph with ``n_edges_total`` edges and at least the given layers and
        heads: for circuit files written before the shape was recorded. None if none fits."""
        best = None
        for n_layers in range(max(n_layers_min, 1), 257):
            if cls(n_layers, max(n_heads_min, 1), True, True).n_edges_closed() > n_edges_total:
                break
            for n_heads in range(max(n_heads_min, 1), 257):
                if cls(n_layers, n_heads, True, True).n_edges_closed() > n_edges_total:
                    break
                for parallel, attn_only in ((False, False), (True, False), (False, True)):
                    if has_mlp is not None and attn_only == has_mlp:
                        continue
                    g = cls(n_layers, n_heads, parallel, attn_only)
                    if g.n_edges_closed() == n_edges_total:
                        cost = (n_layers - n_layers_min) + (n_heads - n_heads_min) + attn_only
                        if best is None or cost < best[0]:
                            best = (cost, g)
        return None if best is None else best[1]

    def n_edges_closed(self) -> int:
        """:attr:`n_edges` in closed form (no edge list is built)."""
        per, L, H = self.per_layer, self.n_layers, self.n_heads
        tri = per * L * (L - 1) // 2  # sum over layers of layer * per
        heads = 3 * H * (L + tri)
        mlp = 0 if self.attn_only else L + tri + (0 if self.parallel else L * H)
        return (heads + mlp + 1 + L * per) * self.n_groups

    def summary(self) -> str:
        split = (f" ({self.base.n_edges} split over {self.n_groups} positions: "
                 f"{', '.join(self.positions[:6])}{', ...' if self.n_groups > 6 else ''})"
                 if self.positions else "")
        return (
            f"{len(self.nodes)} nodes ({self.n_layers} layers x {self.n_heads} heads"
            f"{'' if self.attn_only else ' + MLP'}, input, logits), {self.n_edges} edges{split}"
        )


@lru_cache(maxsize=32)
def _shared(n_layers: int, n_heads: int, parallel: bool, attn_only: bool,
            positions: tuple[str, ...]) -> Graph:
    return Graph(n_layers, n_heads, parallel, attn_only, positions)


def _flag(v) -> bool:
    return v in (True, 1) or str(v).lower() in ("true", "1")
