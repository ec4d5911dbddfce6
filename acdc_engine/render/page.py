"""The circuit as one self-contained HTML page: it opens offline, from a file or an e-mail.

The page inlines the SVG of :mod:`.figure`, the package files ``static/circuit.css`` and
``static/circuit.js`` (read with :mod:`importlib.resources`) and the drawn edges and nodes as
JSON. Hovering an edge shows its name, input and score (and what the score means for the
behaviour); hovering a node its edge counts and total ``|score|``. A slider, a number box or
``page.html#min=0.05`` hides the edges below a ``|score|``. Under the picture: the colour legend,
the edges sorted by ``|score|`` and the run's attributes.
"""

from __future__ import annotations

import html
import json
import re
from functools import cache
from importlib import resources

from .figure import Drawing
from .style import EFFECT_COLOUR

__all__ = ["circuit_html"]


@cache
def _static(name: str) -> str:
    """A file of ``acdc_engine/render/static`` (shipped as package data)."""
    return resources.files(__package__).joinpath("static", name).read_text(encoding="utf-8")


def _inline_svg(svg: str) -> str:
    """The SVG as an element for an HTML page: no XML prolog, doctype, metadata or
    namespace URLs (HTML parses inline SVG without them), natural size kept as a CSS width."""
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>", "", svg, flags=re.S)
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg, count=3)
    m = re.search(r'<svg[^>]*?\swidth="([\d.]+)pt"', svg)
    natural = f"{float(m.group(1)) * 2:.0f}px" if m else "100%"
    for _ in range(2):  # width and height: the page scales the picture
        svg = re.sub(r'(<svg[^>]*?)\s(width|height)="[^"]*"', r"\1", svg, count=1)
    return svg.replace("<svg", f'<svg style="--natural-width:{natural}"', 1)


def _score_text(s: float | None) -> str:
    return "" if s is None else f"{s:.4g}"


def _legend(drawing: Drawing) -> str:
    """The colour legend: one swatch per score class, and what a score is."""
    if not any(e["score"] is not None for e in drawing.edges):
        return ""
    meaning = drawing.meaning
    items = "".join(f'<span class="{k}"><span class="swatch" style="border-color:'
                    f'{EFFECT_COLOUR[k]}"></span>{html.escape(label)}</span>'
                    for k, label in meaning.labels.items())
    return (f'<div class="legend">{items}<span>width, opacity: |score|</span>'
            f'<span class="note">{html.escape(meaning.note)}</span></div>')


def circuit_html(svg: str, drawing: Drawing, attrs: dict | None = None) -> str:
    """The page for the diagram ``svg`` that :func:`.figure.draw` returned with ``drawing``;
    ``attrs`` (the circuit's attributes) fill the run table."""
    edges = sorted(drawing.edges, key=lambda e: -abs(e["score"] or 0.0))
    rows = "\n".join(
        f'<tr id="row-{e["id"]}"><td>{html.escape(e["name"])}</td><td>{e["kind"]}</td>'
        f'<td class="{e["effect"] or ""}">{_score_text(e["score"])}</td></tr>' for e in edges)
    attrs = {k: v for k, v in (attrs or {}).items()
             if isinstance(v, (str, int, float, bool)) and k != "versions"}
    info = "\n".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                     for k, v in attrs.items())
    payload = json.dumps({"edges": drawing.edges, "nodes": drawing.nodes,
                          "effects": drawing.meaning.labels})
    payload = payload.replace("</", "<\\/")  # no "</script>" inside the script element
    title = html.escape(drawing.title)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{_static("circuit.css")}</style></head>
<body>
<header><h1>{title}</h1><p>{html.escape(drawing.subtitle)}</p></header>
{_legend(drawing)}
<div class="controls">
<label>hide edges with |score| below <input type="range" id="thr" min="0" max="0" step="1"
 value="0"></label>
<input type="number" id="thrnum" min="0" step="any" value="0" aria-label="|score| threshold">
<span id="count"></span>
<span style="color:#888">hover an edge or a node for its name and score</span>
</div>
<div id="fig">{_inline_svg(svg)}</div>
<div id="tip" hidden></div>
<details><summary>edges by |score| ({len(edges)})</summary>
<table><thead><tr><th>edge</th><th>input</th><th>score</th></tr></thead>
<tbody>
{rows}
</tbody></table></details>
<details><summary>run</summary><table>{info}</table></details>
<script type="application/json" id="circuit-data">{payload}</script>
<script>{_static("circuit.js")}</script>
</body></html>
"""
