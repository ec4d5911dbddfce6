"""Pictures: a circuit as a layered diagram (SVG, PNG, one offline HTML page) and the
faithfulness curve.

    from acdc_engine.render import render_circuit, plot_curve
    render_circuit(result.circuit, "out")   # out/circuit.svg, out/circuit.png, out/circuit.html
    plot_curve([0.1, 1, 10, 100], [0.2, 0.6, 0.9, 1.0], "out/curve.png")

Modules, each one idea:
    style    the palette, and what a score's sign means for the behaviour (:class:`ScoreMeaning`)
    layout   boxes of the circuit's graph and the paths of its edges (no drawing)
    figure   the matplotlib diagram
    page     the offline HTML page (its script and style are ``static/circuit.{js,css}``)
    curve    the faithfulness curve

A position-aware circuit is drawn as its unsplit overview (``circuit.*``: every edge kept at
some position, scores summed over positions) and one diagram per position group with kept
edges (``circuit_at_END.*``; the ``max_positions`` groups with most edges).

matplotlib is optional (the ``render`` extra) and imported only when something is drawn.
"""

from __future__ import annotations

from pathlib import Path

from ..circuit import Circuit
from ..errors import AcdcError
from .curve import plot_curve
from .figure import draw, svg_text
from .page import circuit_html
from .style import ScoreMeaning

__all__ = ["render_circuit", "plot_curve", "circuit_html", "ScoreMeaning"]


def render_circuit(circuit: Circuit, out_dir: str | Path, stem: str = "circuit", *,
                   higher_is_better: bool | None = None, max_edges: int | None = 1500,
                   dpi: int | None = None, max_positions: int = 8) -> list[Path]:
    """Draw ``circuit`` into ``out_dir``: ``{stem}.svg``, ``{stem}.png`` and ``{stem}.html``.

    Every node of ``circuit.graph`` is drawn (faintly when not in the circuit). An edge's colour
    says what removing it does to the behaviour: a score is ``m(without the edge) - m(full)``,
    so whether it hurts depends on the metric's direction, ``higher_is_better`` (default: the
    circuit's ``metric_higher_is_better`` attribute; unknown: colour by sign). A circuit of more
    than ``max_edges`` edges is drawn with its strongest ``max_edges`` by ``|score|`` (None
    draws all). ``dpi`` of the PNG (default 150, 120 for wide figures). A position-aware
    circuit: the overview and up to ``max_positions`` per-position diagrams (module
    docstring). Returns the paths.
    """
    if not isinstance(circuit, Circuit):
        raise AcdcError(f"render_circuit draws a Circuit, got {type(circuit).__name__} "
                        "(a networkx graph: Circuit.from_networkx(G))")
    kw = dict(higher_is_better=higher_is_better, max_edges=max_edges, dpi=dpi)
    if circuit.graph.positions:
        paths = render_circuit(circuit.unsplit(), out_dir, stem, **kw)
        used = sorted(circuit.positions_used(), key=lambda t: -t[1])[:max_positions]
        for pos, _ in sorted(used, key=lambda t: circuit.graph.positions.index(t[0])):
            paths += render_circuit(circuit.at(pos), out_dir, f"{stem}_at_{pos}", **kw)
        return paths
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, drawing = draw(circuit, ScoreMeaning.of(circuit.attrs, higher_is_better), max_edges)
    svg = svg_text(fig)
    paths = [out / f"{stem}.svg", out / f"{stem}.png", out / f"{stem}.html"]
    paths[0].write_text(svg, encoding="utf-8")
    width_in = fig.get_size_inches()[0]
    fig.savefig(paths[1], dpi=dpi or (150 if width_in < 9 else 120), facecolor="white")
    paths[2].write_text(circuit_html(svg, drawing, circuit.attrs), encoding="utf-8")
    return paths
