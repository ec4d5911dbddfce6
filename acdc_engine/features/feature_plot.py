"""The picture of a feature circuit: layers bottom to top, nodes by score, edges by weight.

    draw_feature_circuit(circuit, "circuit.png", max_edges=80)

Each layer is a row (the ``metric`` node on top); in a row, the layer's kept features and its
error node (a square) are ordered by score. A node's area grows with ``|score|``, its colour
says the sign (blue: removing it lowers the metric, i.e. it supports the behaviour; red: it
works against it); an edge's width grows with ``|weight|``, its colour says the sign. Only the
``max_edges`` heaviest edges are drawn. Both signs are those of removing the node (the
source): negative (blue) lowers the metric. matplotlib (the ``render`` extra) is imported when
something is drawn.
"""

from __future__ import annotations

from pathlib import Path

from ..render.style import need_matplotlib
from .feature_circuit import METRIC, FeatureCircuit, parse_feature_node

__all__ = ["draw_feature_circuit"]

_POS, _NEG = "#2b6cb0", "#c53030"


def _layout(circuit: FeatureCircuit) -> tuple[dict, int]:
    """Node -> (x, y): a row per layer, nodes ordered by score; the metric on top."""
    rows: dict[int, list[str]] = {}
    for name in circuit.nodes:
        rows.setdefault(parse_feature_node(name)[0], []).append(name)
    top = max(rows, default=-1) + 1
    pos = {}
    for layer, names in rows.items():
        names.sort(key=lambda n: circuit.nodes[n])
        for i, n in enumerate(names):
            pos[n] = (i - (len(names) - 1) / 2, layer)
    pos[METRIC] = (0.0, top)
    return pos, top


def draw_feature_circuit(circuit: FeatureCircuit, path: str | Path, max_edges: int = 80,
                         title: str | None = None) -> Path:
    """Draw ``circuit`` (see the module docstring) to ``path`` (PNG or SVG); the path."""
    need_matplotlib()
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    pos, top = _layout(circuit)
    width = max(6.0, 0.45 * max((abs(x) for x, _ in pos.values()), default=1) * 2 + 2)
    fig = Figure(figsize=(min(width, 14), 1.1 * (top + 1) + 1.0))
    ax = fig.add_subplot()
    edges = sorted(circuit.edges.items(), key=lambda kv: -abs(kv[1]))[:max_edges]
    wmax = max((abs(w) for _, w in edges), default=1.0) or 1.0
    for (u, v), w in reversed(edges):
        if u in pos and v in pos:
            (x0, y0), (x1, y1) = pos[u], pos[v]
            ax.add_line(Line2D([x0, x1], [y0, y1], lw=0.3 + 3.5 * abs(w) / wmax,
                               color=_POS if w < 0 else _NEG, alpha=0.45, zorder=1))
    smax = max((abs(s) for s in circuit.nodes.values()), default=1.0) or 1.0
    for name, s in circuit.nodes.items():
        x, y = pos[name]
        err = parse_feature_node(name)[1] is None
        # a removed node changes the metric by its score: negative = it supports the metric
        ax.scatter([x], [y], s=30 + 500 * abs(s) / smax, marker="s" if err else "o",
                   color=_POS if s < 0 else _NEG, edgecolor="black", linewidth=0.5, zorder=2)
        ax.annotate(name.split(".", 1)[1], (x, y), fontsize=6, ha="center", va="center",
                    xytext=(0, -11), textcoords="offset points", zorder=3)
    ax.scatter([0], [top], s=250, marker="D", color="#444444", zorder=2)
    ax.annotate("metric", (0, top), fontsize=8, ha="center", xytext=(0, 10),
                textcoords="offset points")
    ax.set_yticks(range(top + 1), [f"layer {i}" for i in range(top)] + [""])
    ax.set_xticks([])
    ax.set_ylim(-0.7, top + 0.7)
    xs = [x for x, _ in pos.values()]
    ax.set_xlim(min(xs) - 1, max(xs) + 1)
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)
    ax.set_title(title or circuit.summary(), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=80)
    return path
