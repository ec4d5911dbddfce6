"""The notebook's side of a session: inline HTML for Jupyter (a session renders as its summary
and interventions, a served session as a link and an embedded page). The changes code makes to
the model (hooks, edits) are :mod:`.hooks` and :meth:`Session.changing
<acdc_engine.view.session.Session.changing>`."""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .session import Session

__all__ = ["session_html", "bars_svg"]


def bars_svg(values: list[float], width: int = 320, height: int = 48) -> str:
    """A tiny bar chart of per-example values (blue above zero, red below)."""
    if not values:
        return ""
    top = max(max(abs(v) for v in values), 1e-9)
    w = width / len(values)
    mid = height / 2
    bars = []
    for i, v in enumerate(values):
        h = abs(v) / top * (mid - 1)
        y = mid - h if v >= 0 else mid
        colour = "#3b6fb6" if v >= 0 else "#c0392b"
        bars.append(f'<rect x="{i * w:.1f}" y="{y:.1f}" width="{max(w - 1, 1):.1f}" '
                    f'height="{h:.1f}" fill="{colour}"/>')
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="metric per example">'
            f'<line x1="0" x2="{width}" y1="{mid}" y2="{mid}" stroke="#999"/>{"".join(bars)}'
            "</svg>")


def session_html(s: Session) -> str:
    """The session's state as one HTML block."""
    m = s.summary
    rows = [("model", s.model.id), ("task", f"{s.task} ({s.problem.n_examples} examples)"),
            (s.problem.metric.name, f"{m.metric:.4g} ({m.delta:+.4g} last step)"),
            ("answer probability", f"{m.prob:.3f}"),
            ("accuracy", f"{m.accuracy:.3f}"),
            ("flipped vs. clean", ", ".join(map(str, m.flipped[:20])) or "none")]
    if m.logit_diff is not None:
        rows.insert(3, ("logit difference", f"{m.logit_diff:.4g}"))
    info = s.circuit.info()
    if info:
        f = info["faithfulness"]["normalized"] if info["faithfulness"] else None
        rows.append(("circuit", f"{info['source']}: {info['n_edges']} edges"
                     + (f", faithfulness {f:.3f}" if f is not None else "")))
    table = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{escape(k)}</th>"
                    f"<td>{escape(str(v))}</td></tr>" for k, v in rows)
    shown = s.steps + [f"hook on {n} (from code)" for n in s.hooks]
    ivs = "".join(f"<li><code>{escape(t)}</code></li>" for t in shown) or "<li>none</li>"
    return (f"<div class='acdc-session'><b>acdc view session</b> {escape(s.name)}"
            f"<table>{table}</table><div>interventions:<ol>{ivs}</ol></div>"
            f"{bars_svg(m.per_example)}</div>")
