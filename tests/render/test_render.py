"""Pictures: the circuit diagram (SVG, PNG, offline HTML) and the faithfulness curve.

The browser test loads the page in headless Chromium and reads back the DOM its script built;
it is skipped when no ``chromium`` is on PATH (Debian: ``apt-get install chromium``).
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import torch

from acdc_engine.circuit import Circuit
from acdc_engine.errors import AcdcError
from acdc_engine.graph import Graph, NodeKind
from acdc_engine.render import plot_curve, render_circuit
from acdc_engine.render.layout import layout
from acdc_engine.render.style import BLUE, RED, ScoreMeaning

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ATTRS = dict(model="/models/gpt2-tiny", task="ioi", method="eap", metric="logit_diff",
             faithfulness=0.8125)


def circuit(n_layers=3, n_heads=3, n_edges=12, seed=0, scores=True, attrs=None, **graph_kw
            ) -> Circuit:
    """A connected random circuit: random input-to-logits paths until ``n_edges`` are kept."""
    g = Graph(n_layers, n_heads, **graph_kw)
    gen = torch.Generator().manual_seed(seed)
    values = torch.randn(g.n_edges, generator=gen)
    into: dict[str, list[int]] = {}
    for i, e in enumerate(g.edges):
        into.setdefault(e.dst.name, []).append(i)
    keep = torch.zeros(g.n_edges, dtype=torch.bool)
    while int(keep.sum()) < n_edges:
        node = "logits"
        while node != "input":
            options = into[node]
            i = options[int(torch.randint(len(options), (1,), generator=gen))]
            keep[i] = True
            node = g.edges[i].src.name
    return Circuit(g, keep, values if scores else None, dict(ATTRS if attrs is None else attrs))


def svg_edges(path) -> list[str]:
    """ids of the edge groups of a written SVG (it parses as XML)."""
    root = ET.parse(path).getroot()
    return [el.get("id") for el in root.iter() if re.fullmatch(r"e\d+", el.get("id") or "")]


def svg_edge_colours(path) -> list[str]:
    """The stroke colour of each edge group of a written SVG, in drawing order."""
    root = ET.parse(path).getroot()
    out = []
    for el in root.iter():
        if re.fullmatch(r"e\d+", el.get("id") or ""):
            style = next(p.get("style") for p in el.iter() if p.tag.endswith("path"))
            out.append(re.search(r"stroke:\s*(#[0-9a-f]{6})", style).group(1))
    return out


def page_data(html_path) -> dict:
    """The JSON the HTML page's script reads."""
    text = html_path.read_text()
    m = re.search(r'<script type="application/json" id="circuit-data">(.*?)</script>', text,
                  re.S)
    return json.loads(m.group(1).replace("<\\/", "</"))


def test_render_writes_svg_png_and_html(tmp_path):
    c = circuit(n_edges=5)
    paths = render_circuit(c, tmp_path / "out")
    assert [p.name for p in paths] == ["circuit.svg", "circuit.png", "circuit.html"]
    assert all(p.stat().st_size > 1000 for p in paths)
    assert paths[1].read_bytes()[:8] == PNG_MAGIC
    assert len(svg_edges(paths[0])) == c.number_of_edges()
    text = paths[0].read_text()
    for node in c.nodes:  # circuit nodes are labelled; so is the title
        assert f">{node}<" in text
    assert "gpt2-tiny" in text and "faithfulness 0.812" in text


def test_html_is_self_contained(tmp_path):
    c = circuit(n_edges=20, seed=1)
    page = render_circuit(c, tmp_path, stem="c")[2].read_text()
    assert not re.search(r"https?://", page), "the page must not reference anything online"
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)
    assert page.count("<svg") == 1 and "<script>" in page
    assert all(name in page for name in c.edge_names)  # in the hover data
    # the script and style are the package's static files, inlined
    assert "document.body.dataset.ready" in page and "#fig .edge.hidden" in page


@pytest.mark.parametrize("n_layers,n_heads,n_edges", [(2, 2, 5), (12, 12, 300)])
def test_small_and_gpt2_small_sized_circuits(tmp_path, n_layers, n_heads, n_edges):
    c = circuit(n_layers, n_heads, n_edges, seed=2)
    svg, png, _ = render_circuit(c, tmp_path)
    assert len(svg_edges(svg)) == c.number_of_edges()
    # every node of the model is drawn (faintly when not in the circuit)
    text = svg.read_text()
    assert all(f">{n.name}<" in text for n in c.graph.nodes)


def test_circuit_read_back_from_json_renders(tmp_path):
    c = circuit(seed=3)
    c2 = Circuit.load(c.save(tmp_path / "circuit.json"))
    assert len(svg_edges(render_circuit(c2, tmp_path)[0])) == c.number_of_edges()


def test_without_scores_attn_only_parallel_and_empty(tmp_path):
    for i, (kw, n) in enumerate([({"scores": False}, 8), ({"attn_only": True}, 6),
                                 ({"parallel": True}, 10)]):
        c = circuit(n_edges=n, seed=i, **kw)
        assert len(svg_edges(render_circuit(c, tmp_path, stem=f"c{i}")[0])) == c.number_of_edges()
    g = Graph(2, 2)
    empty = Circuit(g, torch.zeros(g.n_edges, dtype=torch.bool))
    assert "empty circuit" in render_circuit(empty, tmp_path, stem="empty")[0].read_text()


def test_large_circuits_draw_their_strongest_edges(tmp_path):
    c = circuit(2, 2, 40, seed=4)
    svg = render_circuit(c, tmp_path, max_edges=10)[0]
    assert len(svg_edges(svg)) == 10
    assert "strongest 10 drawn" in svg.read_text()


# ----- the model's shape comes from the circuit's graph -------------------------------------
@pytest.mark.parametrize("kw", [{}, {"parallel": True}, {"attn_only": True}])
def test_the_layout_is_the_circuits_graph(kw):
    g = Graph(3, 2, **kw)
    c = circuit(3, 2, 4, seed=6, **kw)
    lay = layout(c.graph, set(c.nodes))
    assert list(lay.boxes) == [n.name for n in g.nodes]  # every node, in graph order
    assert {b.name for b in lay.boxes.values() if b.present} == set(c.nodes)
    has_mlp = any(b.kind is NodeKind.MLP for b in lay.boxes.values())
    assert has_mlp == (not g.attn_only)
    ys = [lay.boxes[name].y for name in ("input", "a0.0", "a1.0", "a2.0", "logits")]
    assert ys == sorted(ys)  # the residual stream reads bottom to top


def test_the_model_shape_is_read_from_the_edge_total(tmp_path):
    for n_layers, n_heads, parallel, attn_only in itertools.product(
            [1, 2, 5, 12], [1, 3, 12], [False, True], [False, True]):
        g = Graph(n_layers, n_heads, parallel, attn_only)
        assert g.n_edges_closed() == g.n_edges
    assert Graph.infer(32491, 1, 1) == Graph(12, 12)
    # an old circuit file (no recorded shape, only the edge total) is read onto that graph
    c = circuit(12, 12, 3, seed=7)
    data = c.to_json()
    for key in ("n_layers", "n_heads", "parallel", "attn_only"):
        data["graph"].pop(key)
    assert data["graph"]["n_edges_total"] == 32491
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    old = Circuit.load(path)
    assert old.graph == Graph(12, 12) and old.edge_names == c.edge_names
    text = render_circuit(old, tmp_path, stem="old")[0].read_text()
    assert all(f">{n.name}<" in text for n in old.graph.nodes)


# ----- what the colour means --------------------------------------------------------------
def test_colour_means_the_same_for_every_metric_direction(tmp_path):
    """Same scores: with logit_diff (higher is better) and with KL (lower is better) every edge
    falls in the opposite colour class, and the legend says what the classes mean."""
    c = circuit(n_edges=12, seed=8)
    ld = Circuit(c.graph, c.keep, c.scores, dict(ATTRS, metric_higher_is_better=True))
    kl = Circuit(c.graph, c.keep, c.scores,
                 dict(ATTRS, metric="kl_div", metric_higher_is_better=False))
    out = {}
    for name, circ in (("ld", ld), ("kl", kl)):
        svg, _, page = render_circuit(circ, tmp_path, stem=name)
        out[name] = (svg_edge_colours(svg), page_data(page), svg.read_text(), page.read_text())
    (ld_colours, ld_data, ld_svg, ld_page), (kl_colours, kl_data, kl_svg, kl_page) = \
        out["ld"], out["kl"]
    assert len(ld_colours) == c.number_of_edges() and set(ld_colours) == {BLUE, RED}
    assert all({a, b} == {BLUE, RED} for a, b in zip(ld_colours, kl_colours))
    # logit_diff: removing an edge with a negative score lowers it, so that edge is important
    for e in ld_data["edges"]:
        assert e["effect"] == ("hurts" if e["score"] < 0 else "helps")
    for e in kl_data["edges"]:
        assert e["effect"] == ("hurts" if e["score"] > 0 else "helps")
    blue = [e["effect"] for e, colour in zip(ld_data["edges"], ld_colours) if colour == BLUE]
    assert set(blue) == {"hurts"}
    # the legend says it, naming the metric, on the picture and on the page
    for text, metric, falls in ((ld_svg, "logit_diff", True), (ld_page, "logit_diff", True),
                                (kl_svg, "kl_div", False), (kl_page, "kl_div", False)):
        assert "important: removing it hurts" in text
        assert "works against it: removing it helps" in text
        assert f"({metric} {'falls' if falls else 'rises'})" in text
        assert f"score = {metric}(without the edge)" in text
    assert ld_data["effects"]["hurts"].startswith("important")


def test_colour_is_the_sign_when_the_direction_is_unknown(tmp_path):
    c = circuit(n_edges=8, seed=9)
    assert "metric_higher_is_better" not in c.attrs
    svg, _, page = render_circuit(c, tmp_path)
    for e, colour in zip(page_data(page)["edges"], svg_edge_colours(svg)):
        assert colour == (BLUE if e["score"] >= 0 else RED)
        assert e["effect"] == ("pos" if e["score"] >= 0 else "neg")
    for text in (svg.read_text(), page.read_text()):
        assert "score &gt; 0" in text and "score &lt; 0" in text
        assert "removing it hurts" not in text
    # the direction can be given: it overrides the circuit's attributes
    svg2 = render_circuit(c, tmp_path, stem="given", higher_is_better=True)[0]
    assert "important: removing it hurts (logit_diff falls)" in svg2.read_text()


def test_score_meaning_reads_recorded_attributes():
    assert ScoreMeaning.of({"metric_higher_is_better": "False", "metric": "nll"}) == \
        ScoreMeaning(False, "nll")
    assert ScoreMeaning.of({}).labels == {"pos": "score > 0", "neg": "score < 0"}
    assert ScoreMeaning(True).effect(float("nan")) is None


def test_without_matplotlib_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(AcdcError, match=r"pip install 'acdc-engine\[render\]'"):
        render_circuit(circuit(n_edges=3), tmp_path)
    with pytest.raises(AcdcError, match="matplotlib"):
        plot_curve([1, 10], [0.5, 1.0], tmp_path / "curve.png")


def test_plot_curve(tmp_path):
    budgets = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100]
    values = [0.0, 0.1, 0.3, 0.5, 0.7, 0.85, 0.95, 1.02, 1.0, 1.0]
    (png,) = plot_curve(budgets, values, tmp_path / "curve.png", title="eap on ioi")
    assert png.read_bytes()[:8] == PNG_MAGIC
    written = plot_curve(budgets, values, tmp_path / "svg" / "curve.svg")
    assert sorted(p.suffix for p in written) == [".png", ".svg"]
    ET.parse(tmp_path / "svg" / "curve.svg")


# ----- in a browser -------------------------------------------------------------------------
CHROMIUM = next((shutil.which(b) for b in ("chromium", "chromium-browser") if shutil.which(b)),
                None)
PROBE = """<script>
// what a person's pointer would do: hover the strongest edge, then a node
const all = document.querySelectorAll('.edge'), e = all[all.length - 1];
e.dispatchEvent(new MouseEvent('mouseenter', {clientX: 20, clientY: 20}));
e.dispatchEvent(new MouseEvent('mousemove', {clientX: 20, clientY: 20}));
document.body.dataset.edgeTip = document.getElementById('tip').textContent;
document.body.dataset.focus = document.getElementById('fig').className;
e.dispatchEvent(new MouseEvent('mouseleave'));
const n = document.querySelector('.node');
n.dispatchEvent(new MouseEvent('mousemove', {clientX: 20, clientY: 20}));
document.body.dataset.nodeTip = document.getElementById('tip').textContent;
</script></body>"""


def dump_dom(page, tmp_path) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", page]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="no chromium on PATH")
def test_html_page_in_headless_chromium(tmp_path):
    c = circuit(4, 4, 30, seed=5, attrs=dict(ATTRS, metric_higher_is_better=True))
    html_path = render_circuit(c, tmp_path)[2]
    n = c.number_of_edges()
    scores = sorted(abs(c.score(e)) for e in c.edges)

    dom = dump_dom(html_path.as_uri(), tmp_path)
    assert 'data-ready="1"' in dom, "the page's script did not run"
    assert len(re.findall(r"<svg[\s>]", dom)) == 1
    assert len(re.findall(r'class="edge"', dom)) == n
    assert f"{n} of {n} edges shown" in dom

    # the threshold hides the weaker edges (set through the address, as a link can)
    t = scores[len(scores) // 2]
    dom = dump_dom(f"{html_path.as_uri()}#min={t!r}", tmp_path)
    shown = sum(s >= t for s in scores)
    assert f"{shown} of {n} edges shown" in dom
    assert len(re.findall(r'class="edge hidden"', dom)) == n - shown

    # hovering shows the name and score of an edge, and a node's summary
    probe = tmp_path / "probe.html"
    probe.write_text(html_path.read_text().replace("</body>", PROBE))
    dom = dump_dom(probe.as_uri(), tmp_path)
    tip = re.search(r'data-edge-tip="([^"]*)"', dom).group(1)
    assert "-&gt;" in tip and "score " in tip
    assert "removing it h" in tip  # and what the score means for the behaviour
    assert 'data-focus="focus"' in dom
    assert "edges in" in re.search(r'data-node-tip="([^"]*)"', dom).group(1)
