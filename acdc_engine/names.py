"""The names of acdc-engine's vocabulary: node and edge kinds, :class:`Node`, :class:`Edge`, and
the one parser and formatter of their names.

Nodes
    ``input``       the embeddings (token + position); writes only.
    ``a{l}.{h}``    attention head ``h`` of layer ``l``; reads through three inputs (q, k, v).
    ``m{l}``        the MLP of layer ``l``.
    ``logits``      the unembedding (final norm + LM head); reads only.

Edges
    ``u->v`` for an MLP or the logits, ``u->a{l}.{h}<q>`` (``<k>``, ``<v>``) into a head.
    In a sequential block (GPT-2), the MLP of layer ``l`` reads the heads of layer ``l``; in a
    parallel block (GPT-J, NeoX) it does not.

Position-split edges
    In a position-aware graph (:meth:`acdc_engine.graph.Graph.with_positions`) an edge name
    ends with its position group: ``a0.1->a2.3<q>@END`` is the part of ``a0.1->a2.3<q>`` at
    the tokens of group ``END``. Groups are token indices (``@0``, ``@1``, ...; every prompt of
    one length) or names a task declares (``IO``, ``S1``, ``S2``, ``END``, with ``other`` for
    the remaining tokens), made of letters, digits, ``_``, ``.`` and ``-``.

Names are this module's alone: :func:`parse_node`, :func:`parse_edge` and :func:`edge_position`
read them (for files and user input, without a graph), :func:`node_name`, :func:`edge_name` and
:attr:`Edge.name` write them, :func:`check_positions` checks position group names. Nothing else
parses names; :mod:`acdc_engine.graph` (which re-exports every public name here) lays them out
on a model's writer/reader axes.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

__all__ = ["NodeKind", "EdgeKind", "Node", "Edge", "parse_node", "parse_edge", "edge_name",
           "edge_position", "node_name", "check_positions"]


class NodeKind(str, enum.Enum):
    """What a node is."""

    INPUT = "input"
    """Token and position embeddings."""
    ATTN = "attn"
    """One attention head."""
    MLP = "mlp"
    """One MLP block."""
    LOGITS = "logits"
    """Final norm and unembedding."""


class EdgeKind(str, enum.Enum):
    """Which input of the destination node an edge feeds."""

    RESID = ""
    """The single input of an MLP or of the logits."""
    Q = "q"
    """The query input of an attention head."""
    K = "k"
    """The key input of an attention head."""
    V = "v"
    """The value input of an attention head."""


@dataclass(frozen=True)
class Node:
    """A component of the model. ``layer`` is -1 for ``input`` and ``n_layers`` for ``logits``."""

    name: str
    kind: NodeKind
    layer: int
    head: int | None = None

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Edge:
    """``src`` writes to the residual stream that ``dst`` reads through input ``kind``."""

    src: Node
    dst: Node
    kind: EdgeKind = EdgeKind.RESID
    pos: str | None = None
    """The position group in a position-aware graph (None: every token)."""

    @property
    def name(self) -> str:
        return edge_name(self.src.name, self.dst.name, self.kind, self.pos)

    def __str__(self) -> str:
        return self.name


_POSITION = r"[\w.-]+"
_NODE_RE = re.compile(r"^(?:a(?P<al>\d+)\.(?P<h>\d+)|m(?P<ml>\d+)|input|logits)$")
_EDGE_RE = re.compile(
    rf"^(?P<src>[\w.]+)->(?P<dst>[\w.]+)(?:<(?P<kind>[qkv])>)?(?:@(?P<pos>{_POSITION}))?$")


def parse_node(name: str) -> tuple[NodeKind, int | None, int | None]:
    """``(kind, layer, head)`` of a node name; layer is None for input/logits (no graph is
    needed to read a name; :meth:`Graph.node` gives the node with its layer)."""
    m = _NODE_RE.match(name.strip())
    if m is None:
        raise ValueError(f"{name!r} is not a node name (nodes are 'input', 'a{{layer}}.{{head}}', "
                         "'m{layer}', 'logits')")
    if m["al"] is not None:
        return NodeKind.ATTN, int(m["al"]), int(m["h"])
    if m["ml"] is not None:
        return NodeKind.MLP, int(m["ml"]), None
    return (NodeKind.INPUT if name.strip() == "input" else NodeKind.LOGITS), None, None


def node_name(kind: NodeKind, layer: int | None = None, head: int | None = None) -> str:
    """The name of a node (the inverse of parse_node): ``a{layer}.{head}`` for a head,
    ``m{layer}`` for an MLP, ``input`` or ``logits``."""
    if kind is NodeKind.ATTN:
        return f"a{layer}.{head}"
    if kind is NodeKind.MLP:
        return f"m{layer}"
    return NodeKind(kind).value


def parse_edge(name: str) -> tuple[str, str, EdgeKind]:
    """``(src name, dst name, kind)`` of an edge name such as ``a0.1->a2.3<q>`` (a position
    suffix ``@END`` is allowed: :func:`edge_position` reads it)."""
    m = _EDGE_RE.match(name.strip())
    if m is None:
        raise ValueError(f"{name!r} is not an edge name (edges look like 'input->m0', "
                         "'a0.1->a2.3<q>')")
    for n in (m["src"], m["dst"]):
        parse_node(n)
    return m["src"], m["dst"], EdgeKind(m["kind"] or "")


def edge_position(name: str) -> tuple[str, str | None]:
    """``(the unsplit edge's name, position group or None)``: ``a0.1->m2@END`` gives
    ``("a0.1->m2", "END")``."""
    src, dst, kind = parse_edge(name)
    return edge_name(src, dst, kind), _EDGE_RE.match(name.strip())["pos"]


def edge_name(src: str, dst: str, kind: EdgeKind | str = EdgeKind.RESID,
              pos: str | None = None) -> str:
    """The name of the edge ``src -> dst`` into input ``kind``, at position group ``pos`` (the
    inverse of parse_edge and edge_position)."""
    kind = EdgeKind("" if kind in ("resid", None) else kind)
    return (f"{src}->{dst}" + (f"<{kind.value}>" if kind is not EdgeKind.RESID else "")
            + ("" if pos is None else f"@{pos}"))


def check_positions(positions) -> tuple[str, ...]:
    """``positions`` as a tuple of position group names; ValueError unless they are distinct
    names of letters, digits, ``_``, ``.``, ``-`` (so that every split edge name parses)."""
    positions = tuple(str(p) for p in positions)
    bad = [p for p in positions if not re.fullmatch(_POSITION, p)]
    if bad or len(set(positions)) != len(positions):
        raise ValueError(f"position groups must be distinct names of letters, digits, "
                         f"'_', '.', '-': got {list(positions)}")
    return positions
