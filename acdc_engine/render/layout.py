"""Where things go: the boxes of a model's nodes and the paths of a circuit's edges.

The layout is computed from the circuit's :class:`~acdc_engine.graph.Graph` (every node of the
model gets a box, so the circuit is seen in place) and reads bottom to top like the residual
stream: ``input`` at the bottom, then for each layer a row of its heads side by side and, one
row up in a column on the right, the layer's MLP; ``logits`` at the top.

Coordinates are data units: one per head column and one per row. An edge ``u->v`` runs from the
top of u to the bottom of v; an edge into a head ends at its ``q`` (left), ``k`` (middle) or
``v`` (right) port. An edge that would cross another box runs up a *lane* (a corridor between
head columns, or right of the MLPs) instead, side by side with the lane's other edges.

Nothing here draws: :func:`route` returns vertices and matplotlib path codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..graph import Edge, EdgeKind, Graph, Node, NodeKind
from .style import PORTS

__all__ = ["Box", "Layout", "layout", "route", "HEAD_W", "MLP_W", "BOX_H"]

HEAD_W = 0.78
"""A head's box width, in data units."""
MLP_W = 1.15
"""An MLP's box width, in data units."""
BOX_H = 0.46
"""Every box's height, in data units."""
MOVETO, LINETO, CURVE4 = 1, 2, 4  # the codes of matplotlib.path.Path
Route = tuple[list[tuple[float, float]], list[int]]
"""One edge's path: its vertices and their matplotlib path codes."""


@dataclass
class Box:
    """A node's box: centre ``(x, y)``, size ``(w, h)``; ``present`` when in the circuit."""

    node: Node
    x: float
    y: float
    w: float
    h: float
    present: bool

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def kind(self) -> NodeKind:
        return self.node.kind

    @property
    def top(self) -> float:
        return self.y + self.h / 2

    @property
    def bottom(self) -> float:
        return self.y - self.h / 2


@dataclass
class Layout:
    """Boxes by node name (in the graph's node order) and the lanes long edges take."""

    boxes: dict[str, Box]
    lanes: list[tuple[float, float]]  # (centre x, width) of the vertical corridors
    top: float  # the y of the logits
    left: float
    right: float
    row_y: dict[int, float]  # layer -> y of its heads


def layout(graph: Graph, present: set[str]) -> Layout:
    """The boxes of every node of ``graph``; those named in ``present`` are the circuit's.

    Rows bottom to top: input, then per layer its heads and (in a column to the right, one row
    up) its MLP, then logits. The lanes run between the head columns, left of the first head
    and right of the last one (and, with MLPs, right of the MLP column)."""
    H, has_mlp = max(graph.n_heads, 1), not graph.attn_only
    rows = 2 if has_mlp else 1
    last = H - 1 + HEAD_W / 2  # right edge of the last head
    lanes = [(-HEAD_W / 2 - 0.17, 0.26)] + [(h + 0.5, 1 - HEAD_W - 0.04) for h in range(H - 1)]
    xm = last + 0.42 + MLP_W / 2  # the MLP column
    if has_mlp:
        lanes += [(last + 0.21, 0.3), (xm + MLP_W / 2 + 0.26, 0.36)]
    else:
        lanes += [(last + 0.17, 0.26)]
    left, right = lanes[0][0] - 0.22, lanes[-1][0] + 0.22
    mid, span = (left + right) / 2, right - left - 0.1
    top = float(1 + rows * graph.n_layers)
    boxes: dict[str, Box] = {}
    row_y = {layer: float(1 + rows * layer) for layer in range(graph.n_layers)}
    for node in graph.nodes:
        if node.kind is NodeKind.INPUT:
            x, y, w = mid, 0.0, span
        elif node.kind is NodeKind.LOGITS:
            x, y, w = mid, top, span
        elif node.kind is NodeKind.ATTN:
            x, y, w = float(node.head), row_y[node.layer], HEAD_W
        else:  # the MLP, a row above its layer's heads
            x, y, w = xm, row_y[node.layer] + 1, MLP_W
        boxes[node.name] = Box(node, x, y, w, BOX_H, node.name in present)
    return Layout(boxes, lanes, top, left, right, row_y)


def _out_x(src: Box, toward: float) -> float:
    """Where an edge leaves the top of ``src`` on its way to x = ``toward``."""
    if src.kind is NodeKind.ATTN:
        return src.x
    reach = 0.42 * src.w
    if src.kind is NodeKind.MLP:
        return src.x + max(-reach, min(reach, 0.35 * (toward - src.x)))
    return max(src.x - reach, min(src.x + reach, toward))  # the input bar: straight below


def _in_x(dst: Box, kind: EdgeKind, coming_from: float) -> float:
    """Where an edge enters the bottom of ``dst``: a head's q/k/v port, else toward the edge."""
    if dst.kind is NodeKind.ATTN:
        return dst.x + PORTS.get(kind, 0.0) * dst.w
    reach = 0.42 * dst.w
    if dst.kind is NodeKind.MLP:
        return dst.x + max(-reach, min(reach, 0.35 * (coming_from - dst.x)))
    return max(dst.x - reach, min(dst.x + reach, coming_from))  # the logits bar: straight above


def _bezier(p0, p3, n: int = 24) -> np.ndarray:
    """``[n, 2]`` points along the S-curve from p0 up to p3 (vertical tangents at both ends)."""
    bend = min(0.55 * (p3[1] - p0[1]), 1.4)
    c = np.array([p0, (p0[0], p0[1] + bend), (p3[0], p3[1] - bend), p3])  # [4, 2]
    t = np.linspace(0.04, 0.96, n)[:, None]  # [n, 1]
    return ((1 - t) ** 3) * c[0] + 3 * ((1 - t) ** 2) * t * c[1] + 3 * (1 - t) * t * t * c[2] \
        + t ** 3 * c[3]


def route(lay: Layout, edges: list[Edge]) -> list[Route]:
    """Each edge's path, in the order given.

    An edge that can curve from u to v without crossing another box does; any other goes up
    the nearest lane, the lane's edges side by side (long edges outside short ones)."""
    boxes = lay.boxes
    rect = np.array([(b.x - b.w / 2 - 0.02, b.bottom - 0.02, b.x + b.w / 2 + 0.02, b.top + 0.02)
                     for b in boxes.values()])  # [n_boxes, 4]: x0, y0, x1, y1
    index = {name: i for i, name in enumerate(boxes)}
    plans = []  # (how, p0, p3, lane)
    for e in edges:
        src, dst = boxes[e.src.name], boxes[e.dst.name]
        x1 = _in_x(dst, e.kind, src.x)
        p0 = (_out_x(src, x1), src.top)
        p3 = (_in_x(dst, e.kind, p0[0]), dst.bottom)
        pts = _bezier(p0, p3)  # [n, 2]
        inside = ((pts[:, None, 0] > rect[None, :, 0]) & (pts[:, None, 0] < rect[None, :, 2])
                  & (pts[:, None, 1] > rect[None, :, 1]) & (pts[:, None, 1] < rect[None, :, 3]))
        inside[:, [index[e.src.name], index[e.dst.name]]] = False  # [n, n_boxes]
        if not inside.any():
            plans.append(("direct", p0, p3, None))
            continue
        lane = min(range(len(lay.lanes)),
                   key=lambda i: abs(lay.lanes[i][0] - p0[0]) + abs(lay.lanes[i][0] - x1))
        g = lay.lanes[lane][0]
        plans.append(("lane", (_out_x(src, g), src.top), (_in_x(dst, e.kind, g), dst.bottom),
                      lane))
    offsets = _lane_offsets(lay, plans)
    out: list[Route] = []
    for i, (how, p0, p3, lane) in enumerate(plans):
        if how == "direct":
            bend = min(0.55 * (p3[1] - p0[1]), 1.4)
            out.append(([p0, (p0[0], p0[1] + bend), (p3[0], p3[1] - bend), p3],
                        [MOVETO, CURVE4, CURVE4, CURVE4]))
            continue
        g = lay.lanes[lane][0] + offsets[i]
        a, b = p0[1] + 0.5, p3[1] - 0.5  # turn in the space between rows
        out.append(([p0, (p0[0], p0[1] + 0.3), (g, p0[1] + 0.2), (g, a), (g, b),
                     (g, p3[1] - 0.2), (p3[0], p3[1] - 0.3), p3],
                    [MOVETO, CURVE4, CURVE4, CURVE4, LINETO, CURVE4, CURVE4, CURVE4]))
    return out


def _lane_offsets(lay: Layout, plans: list) -> dict[int, float]:
    """Per lane-routed edge: its x offset from the lane's centre, spread across the lane."""
    by_lane: dict[int, list[int]] = {}
    for i, plan in enumerate(plans):
        if plan[0] == "lane":
            by_lane.setdefault(plan[3], []).append(i)
    offsets: dict[int, float] = {}
    for lane, members in by_lane.items():
        members.sort(key=lambda i: (plans[i][1][1], -plans[i][2][1], plans[i][1][0]))
        width = lay.lanes[lane][1]
        for k, i in enumerate(members):
            offsets[i] = ((k + 0.5) / len(members) - 0.5) * width * 0.9
    return offsets
