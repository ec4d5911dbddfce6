"""The circuit diagram as a matplotlib figure (written as SVG and PNG by :func:`render_circuit`).

Boxes and paths come from :mod:`.layout`; the colour of an edge says what removing it does to
the behaviour (:class:`.style.ScoreMeaning`: blue important, red works against it), its width
and opacity its ``|score|`` relative to the strongest edge drawn. Nodes of the model that are
not in the circuit are drawn faintly. Every edge is an SVG group with id ``e{rank}`` (weakest
first) and every circuit node one with id ``n{j}``: the HTML page's script finds them by these
ids in :attr:`Drawing.edges` and :attr:`Drawing.nodes`.

matplotlib is imported when a figure is drawn, so the package imports without it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from io import StringIO
from pathlib import Path

from ..circuit import Circuit
from ..graph import Edge, NodeKind
from .layout import HEAD_W, Layout, layout, route
from .style import EFFECT_COLOUR, FILL, NEUTRAL, OUTLINE, PORTS, ScoreMeaning, need_matplotlib

__all__ = ["Drawing", "draw", "svg_text"]


@dataclass
class Drawing:
    """What the HTML page needs besides the SVG: the drawn edges and circuit nodes (with the
    ids of their SVG groups), the title lines and how scores read."""

    edges: list[dict] = field(default_factory=list)  # id, name, src, dst, kind, score, effect
    nodes: list[dict] = field(default_factory=list)  # id, name, kind, layer, head
    title: str = "circuit"
    subtitle: str = ""
    meaning: ScoreMeaning = field(default_factory=ScoreMeaning)


def _kept(circuit: Circuit) -> list[tuple[Edge, float | None]]:
    """The circuit's edges with their scores (None when not scored)."""
    out = []
    for i in circuit.keep.nonzero()[:, 0].tolist():
        s = None if circuit.scores is None else float(circuit.scores[i])
        out.append((circuit.graph.edges[i], None if s is None or math.isnan(s) else s))
    return out


def _fmt(v, digits: int = 3) -> str:
    return f"{v:.{digits}g}" if isinstance(v, (int, float)) else str(v)


def _titles(circuit: Circuit) -> tuple[str, str]:
    """The title (model, task, method) and the line under it (faithfulness, sizes, settings)."""
    a = circuit.attrs
    model = Path(str(a["model"])).name if a.get("model") else None
    short = lambda v: v if len(v) <= 40 else v[:18] + "…" + v[-18:]  # noqa: E731
    head = " · ".join(short(str(v)) for v in (model, a.get("task"), a.get("method")) if v)
    parts = []
    if a.get("faithfulness") is not None:
        parts.append(f"faithfulness {_fmt(a['faithfulness'])}")
    if a.get("position"):
        parts.append(f"at position {a['position']}")
    elif a.get("positions"):
        parts.append("edges kept at any position")
    parts.append(f"{circuit.number_of_edges():,} of {circuit.graph.n_edges:,} edges")
    parts.append(f"{circuit.number_of_nodes():,} nodes")
    for key in ("metric", "ablation"):
        if a.get(key):
            parts.append(f"{key} {a[key]}")
    return head or "circuit", " · ".join(parts)


def _edge_style(n_edges: int) -> tuple[float, float, float, float]:
    """(min width, width range, min opacity, max opacity): bold for a handful of edges, fine
    for a thousand."""
    for limit, style in ((20, (0.9, 3.6, 0.5, 0.95)), (100, (0.6, 3.6, 0.32, 0.95)),
                         (300, (0.35, 2.6, 0.2, 0.95)), (800, (0.3, 1.8, 0.15, 0.9))):
        if n_edges <= limit:
            return style
    return 0.25, 1.1, 0.12, 0.8


def draw(circuit: Circuit, meaning: ScoreMeaning, max_edges: int | None = 1500):
    """The diagram of ``circuit`` as a matplotlib ``Figure``, and its :class:`Drawing`.

    More than ``max_edges`` edges: the strongest ``max_edges`` by ``|score|`` are drawn (the
    subtitle says so); None draws all."""
    need_matplotlib()
    from matplotlib.figure import Figure

    lay = layout(circuit.graph, set(circuit.nodes))
    x_span, n_rows = lay.right - lay.left, lay.top + 1
    big = x_span > 8 or n_rows > 14
    # inches: room for the title and legend above, the layer labels on the left
    col_in, row_in = (0.7, 0.52) if big else (0.95, 0.62)
    ax_w, ax_h = max(4.6, col_in * x_span), max(3.0, row_in * n_rows)
    left_in, right_in, bottom_in, top_in = 0.55, 0.15, 0.15, 1.55
    fig_w, fig_h = ax_w + left_in + right_in, ax_h + top_in + bottom_in
    fig = Figure(figsize=(fig_w, fig_h))
    ax = fig.add_axes((left_in / fig_w, bottom_in / fig_h, ax_w / fig_w, ax_h / fig_h))
    ax.set_xlim(lay.left, lay.right)
    ax.set_ylim(-0.4, lay.top + 0.4)
    ax.axis("off")
    label_size = min(9.0, max(5.0, HEAD_W * 72 * ax_w / x_span / 6 / 0.62))  # "a10.11" fits
    for layer, y in lay.row_y.items():
        ax.text(lay.left - 0.05, y, f"L{layer}", ha="right", va="center", fontsize=label_size,
                color="#888888", clip_on=False)

    kept = _kept(circuit)
    order = sorted(range(len(kept)), key=lambda i: abs(kept[i][1] or 0.0))  # weakest first
    if max_edges is not None and len(order) > max_edges:
        order = order[len(order) - max_edges:]  # the strongest; the subtitle says so
    drawing = Drawing(meaning=meaning)
    drawing.edges = _draw_edges(ax, lay, [kept[i] for i in order], meaning)
    drawing.nodes = _draw_nodes(ax, lay, label_size)
    drawing.title, drawing.subtitle = _titles(circuit)
    if len(order) < len(kept):
        drawing.subtitle += f" · the strongest {len(order):,} drawn"
    _header(fig, drawing, scored=any(s is not None for _, s in kept) or not kept)
    if not kept:
        ax.text((lay.left + lay.right) / 2, lay.top / 2 + 0.5, "empty circuit: no edges kept",
                ha="center", va="center", fontsize=12, color="#777777", zorder=20,
                bbox=dict(facecolor="white", edgecolor="#dddddd", boxstyle="round,pad=0.5"))
    return fig, drawing


def _draw_edges(ax, lay: Layout, edges: list[tuple[Edge, float | None]],
                meaning: ScoreMeaning) -> list[dict]:
    """Draw ``edges`` (weakest first, so the strongest are on top); their page data."""
    from matplotlib.patches import PathPatch
    from matplotlib.path import Path as MPath

    top = max((abs(s) for _, s in edges if s is not None), default=0.0) or 1.0
    min_lw, lw_range, min_alpha, max_alpha = _edge_style(len(edges))
    out = []
    for rank, ((e, s), path) in enumerate(zip(edges, route(lay, [e for e, _ in edges]))):
        m = (0.5 if s is None else abs(s) / top) ** 0.8
        eid = f"e{rank}"
        # add_artist, not add_patch: the limits are set already, and updating them is slow
        ax.add_artist(PathPatch(MPath(*path), facecolor="none", edgecolor=meaning.colour(s),
                                lw=min_lw + lw_range * m,
                                alpha=min_alpha + (max_alpha - min_alpha) * m,
                                capstyle="round", joinstyle="round", zorder=1 + m, gid=eid))
        out.append({"id": eid, "name": e.name, "src": e.src.name, "dst": e.dst.name,
                    "kind": e.kind.value or "resid", "score": s, "effect": meaning.effect(s)})
    return out


def _draw_nodes(ax, lay: Layout, label_size: float) -> list[dict]:
    """Draw every box (the circuit's coloured, the others faint); the circuit nodes' data."""
    from matplotlib.patches import FancyBboxPatch

    out, pad = [], 0.04
    for j, b in enumerate(lay.boxes.values()):
        nid = f"n{j}" if b.present else None
        ax.add_artist(FancyBboxPatch(
            (b.x - b.w / 2 + pad, b.y - b.h / 2 + pad), b.w - 2 * pad, b.h - 2 * pad,
            boxstyle=f"round,pad={pad}", facecolor=FILL[b.kind] if b.present else "white",
            edgecolor=OUTLINE[b.kind] if b.present else "#dddddd",
            lw=1.1 if b.present else 0.6, zorder=10, gid=nid))
        colour = "#222222" if b.present else "#c4c4c4"
        if b.kind in (NodeKind.ATTN, NodeKind.MLP):
            ax.text(b.x, b.y + (0.07 if b.present else 0.0), b.name, ha="center", va="center",
                    fontsize=label_size, color=colour, zorder=11)
            small = dict(va="center", fontsize=label_size * 0.72, zorder=11, style="italic")
            if b.present and b.kind is NodeKind.ATTN:
                for port, off in PORTS.items():
                    ax.text(b.x + off * b.w, b.y - 0.135, port.value, ha="center",
                            color="#8a6d3b", **small)
            elif b.present:
                ax.text(b.x, b.y - 0.135, "MLP", ha="center", color="#6a5a8a", **small)
        else:
            ax.text(b.x, b.y, b.name, ha="center", va="center", fontsize=label_size * 1.1,
                    color=colour, zorder=11, fontweight="bold" if b.present else "normal")
        if b.present:
            out.append({"id": nid, "name": b.name, "kind": b.kind.value, "layer": b.node.layer,
                        "head": -1 if b.node.head is None else b.node.head})
    return out


def _header(fig, drawing: Drawing, scored: bool) -> None:
    """Title, subtitle, the colour legend (what the colours mean) and the score's definition."""
    from matplotlib.lines import Line2D

    fig_w, fig_h = fig.get_size_inches()
    room = 72 * fig_w * 0.94  # points across; sizes shrink so that long lines still fit
    fit = lambda text, hi, lo, w: max(lo, min(hi, room / (w * max(len(text), 1))))  # noqa: E731
    fig.text(0.5, 1 - 0.22 / fig_h, drawing.title, ha="center", va="top", fontweight="bold",
             fontsize=fit(drawing.title, 13.0, 8.0, 0.62))
    fig.text(0.5, 1 - 0.52 / fig_h, drawing.subtitle, ha="center", va="top", color="#444444",
             fontsize=fit(drawing.subtitle, 9.5, 6.5, 0.56))
    meaning = drawing.meaning
    if scored:
        handles = [Line2D([], [], color=EFFECT_COLOUR[effect], lw=2.5, label=label)
                   for effect, label in meaning.labels.items()]
        handles.append(Line2D([], [], color="#777777", lw=0.6, alpha=0.5,
                              label="width, opacity: |score|"))
    else:
        handles = [Line2D([], [], color=NEUTRAL, lw=2, label="edge (no scores)")]
    handles.append(Line2D([], [], color="none", label="into a head: q | k | v port"))
    ncol = 2 if len(handles) > 2 else len(handles)
    fig.legend(handles=handles, loc="upper center", ncol=ncol, frameon=False, fontsize=8.5,
               bbox_to_anchor=(0.5, 1 - 0.76 / fig_h), handlelength=2.2, columnspacing=1.6)
    if scored:
        fig.text(0.5, 1 - 1.28 / fig_h, meaning.note, ha="center", va="top", color="#666666",
                 fontsize=fit(meaning.note, 8.0, 6.0, 0.52), style="italic")


def svg_text(fig) -> str:
    """The figure as SVG text: text kept as text, no date, stable ids (reproducible files)."""
    matplotlib = need_matplotlib()
    buf = StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "acdc-engine"}):
        fig.savefig(buf, format="svg", metadata={"Date": None})
    return buf.getvalue()
