"""The attribution-graph page (``/graph?file=...``) in headless Chromium: on a hand-written graph
in circuit-tracer's JSON format (tests/view/data/graph-small.json: 5 tokens, 2 layers, 12 nodes,
12 links) what it draws and where, hover and the node card, pins, hidden nodes and supernodes
kept through save and export (and read by circuit-tracer's own model of the file), the
intervention endpoint against the engine's own, and the server's refusals; then a graph the
engine traces on the tiny GPT-2, and (slow) gpt2-ioi-bpe's IOI graph under its shipped
transcoders, which also makes the pictures of docs/features.md."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from urllib.parse import quote

import pytest

from acdc_engine.errors import AcdcError
from acdc_engine.view.graphs import graph_url, read_graph

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "graph-small.json"
PROMPT_IDS = [0, 1, 2, 3, 4]
CT_PYTHON = Path(os.environ.get("ACDC_CT_VENV", "/work/ct-venv")) / "bin" / "python"
"""circuit-tracer 0.5.0 in its own virtual environment (benchmarks/README_circuit_tracer.md)."""


def _circuit_tracer_reads(path: Path, qparams: dict) -> None:
    """circuit-tracer's pydantic ``Model`` (its frontend's file format) validates ``path`` and
    reads back its pins and supernodes."""
    import subprocess

    code = ("import json, sys; from circuit_tracer.frontend.graph_models import Model; "
            "m = Model.model_validate_json(open(sys.argv[1]).read()); "
            "print(json.dumps([m.qParams.pinnedIds, m.qParams.supernodes, len(m.nodes)]))")
    out = subprocess.run([str(CT_PYTHON), "-c", code, str(path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    pinned, supernodes, n_nodes = json.loads(out.stdout)
    assert pinned == qparams["pinnedIds"] and supernodes == qparams["supernodes"]
    assert n_nodes == len(json.loads(path.read_text())["nodes"])


@pytest.fixture
def graph_file():
    """The fixture graph copied into the results folder (where the page may read and write);
    it names no transcoders, so there are no cards and no interventions."""
    root = Path(os.environ["ACDC_RESULTS"]) / "graphs"
    root.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(FIXTURE, root / "mary-john.json"))


@pytest.fixture(scope="module")
def transcoders_file(gpt2, tmp_path_factory):
    """Random per-layer transcoders (8 features, ReLU, positive encoder bias: most features
    fire) for the tiny GPT-2, saved in the engine's dictionary format."""
    import torch

    from acdc_engine.features import Transcoder, TranscoderSet, save_dictionary

    torch.manual_seed(7)
    d = gpt2.adapter.d_model
    tc = TranscoderSet([Transcoder(d, 8, layer=i) for i in range(gpt2.adapter.n_layers)])
    with torch.no_grad():
        for t in tc.layers:
            t.b_enc.fill_(0.5)
    return save_dictionary(tc, tmp_path_factory.mktemp("tc") / "tiny-tc.safetensors")


@pytest.fixture
def traced_file(graph_file, transcoders_file, gpt2):
    """The fixture graph naming the tiny GPT-2's transcoders and its prompt's token ids, with
    the feature nodes' activations those transcoders give (as a trace writes them)."""
    import torch

    from acdc_engine.features import load_any
    from acdc_engine.features.splice import spliced_run

    data = json.loads(graph_file.read_text())
    data["metadata"].update(transcoders=str(transcoders_file), prompt_ids=PROMPT_IDS)
    with torch.no_grad():
        acts = spliced_run(gpt2.adapter, torch.tensor([PROMPT_IDS]), load_any(transcoders_file)
                           ).acts
    for n in data["nodes"]:
        if n["feature_type"] == "cross layer transcoder":
            layer, feat, pos = map(int, n["node_id"].split("_"))
            n["activation"] = float(acts[layer][0, pos, feat])
            assert n["activation"] > 0  # active, as a graph's features are
    graph_file.write_text(json.dumps(data))
    return graph_file


def _open(page, server, path):
    page.goto(graph_url(server, path))
    page.wait_for_selector("#g-map[data-ready='1']")


def _nodes(page) -> dict[str, dict]:
    """Every drawn node: its centre on the page, size, classes, layer and position."""
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('#g-map .gnode')]
        .map(e => { const b = e.getBBox(); return [e.dataset.node, {x: b.x + b.width / 2,
          y: b.y + b.height / 2, size: b.width, cls: e.getAttribute('class'),
          ctx: +e.dataset.ctx, layer: e.dataset.layer}]; }))""")


def _links(page) -> list[dict]:
    return page.evaluate("""() => [...document.querySelectorAll('#g-map .glink')].map(e => ({
        source: e.dataset.source, target: e.dataset.target, cls: e.getAttribute('class'),
        width: +e.getAttribute('stroke-width')}))""")


def test_page_draws_every_node_and_link_by_token_and_layer(served, page, graph_file):
    graph = json.loads(FIXTURE.read_text())
    _open(page, served, graph_file)
    nodes, links = _nodes(page), _links(page)
    assert set(nodes) == {n["node_id"] for n in graph["nodes"]}
    assert sorted((lk["source"], lk["target"]) for lk in links) == sorted(
        (lk["source"], lk["target"]) for lk in graph["links"])
    assert page.inner_text("#g-counts").startswith("12 nodes, 12 edges")
    # x follows the token: every node of position i lies left of every node of position i + 1
    for i in range(4):
        here = [v["x"] for v in nodes.values() if v["ctx"] == i]
        later = [v["x"] for v in nodes.values() if v["ctx"] > i]
        assert not here or max(here) < min(later)
    # y follows the layer: embeddings at the bottom, then layer 0, layer 1, logits at the top
    row = {"E": 0, "0": 1, "1": 2, "3": 3}
    ys = {r: {round(v["y"], 2) for v in nodes.values() if row[v["layer"]] == r} for r in range(4)}
    assert all(len(ys[r]) == 1 for r in range(4))
    assert ys[0].pop() > ys[1].pop() > ys[2].pop() > ys[3].pop()
    # size by influence (circuit-tracer's cumulative share: smaller is more influential)
    assert nodes["1_5_4"]["size"] > nodes["0_3_2"]["size"] > nodes["1_2_2"]["size"]
    assert nodes["3_5335_4"]["size"] > nodes["3_1757_4"]["size"]  # logits: by probability
    # width by |weight|, colour by sign
    by = {(lk["source"], lk["target"]): lk for lk in links}
    assert max(links, key=lambda lk: lk["width"]) is by[("1_5_4", "3_5335_4")]  # weight 2.1
    assert by[("1_5_4", "3_1757_4")]["width"] > by[("0_3_2", "3_5335_4")]["width"]  # 1.1 > 0.5
    assert "neg" in by[("1_5_4", "3_1757_4")]["cls"] and "pos" in by[("0_3_2", "1_5_4")]["cls"]
    assert page.locator("#g-map text.gtoken").all_text_contents() == \
        graph["metadata"]["prompt_tokens"]
    assert page.errors == []


def test_hover_and_click_show_the_node_and_its_card(served, page, traced_file,
                                                     transcoders_file, view_session):
    from acdc_engine.features import load_any
    from acdc_engine.features.cards import feature_card
    from acdc_engine.view.graphs import GraphPages

    _open(page, served, traced_file)
    page.hover("#g-map .gnode[data-node='1_5_4']")
    hover = page.inner_text("#g-hover")
    assert "1_5_4" in hover and "influence 0.1200" in hover and '" John"' in hover
    page.click("#g-map .gnode[data-node='1_5_4']")
    page.wait_for_selector("#g-card-body .density")
    assert page.inner_text("#g-card-title") == "1_5_4"
    body = page.inner_text("#g-card-body")
    assert "cross layer transcoder" in body and "0.12" in body
    # the card is the engine's: layer 1, feature 5 over the session's task prompts
    card = feature_card(view_session.model, load_any(transcoders_file), 1, 5,
                        GraphPages(view_session).corpus()).to_dict()
    shown = float(page.get_attribute("#g-card-body .density", "data-value"))
    assert shown == pytest.approx(card["density"], rel=1e-6) and 0 < shown <= 1
    assert page.locator("#g-card-body .promotes .tok").evaluate_all(
        "els => els.map(e => e.dataset.token)") == [t for t, _ in card["promoted"]]
    acts = page.locator("#g-card-body .ctx").evaluate_all(
        "els => els.map(e => +e.dataset.activation)")
    assert acts == pytest.approx([c["activation"] for c in card["contexts"]], rel=1e-6)
    assert acts == sorted(acts, reverse=True) and len(acts) > 0
    assert "selected" in page.get_attribute("#g-map .gnode[data-node='1_5_4']", "class")
    page.click("#g-map .gnode[data-node='3_5335_4']")  # a logit: its probability, no card
    page.wait_for_function("document.querySelector('#g-card-title').textContent == '3_5335_4'")
    page.wait_for_selector("#g-card-body td:has-text('token_prob')")
    assert "0.62" in page.inner_text("#g-card-body") and page.errors == []
    assert page.locator("#g-card-body .density").count() == 0


def test_a_graph_without_transcoders_shows_the_node_fields(served, page, graph_file):
    _open(page, served, graph_file)
    page.click("#g-map .gnode[data-node='0_3_2']")
    page.wait_for_function("!document.querySelector('#g-card-body').textContent"
                           ".includes('loading the card')")
    body = page.inner_text("#g-card-body")
    assert "activation" in body and "1.7" in body and "no transcoders" in body
    page.click("#g-intervene")
    page.wait_for_selector("#g-predictions[data-status]")
    assert page.get_attribute("#g-predictions", "data-status") == "501"
    assert "names no transcoders" in page.inner_text("#g-predictions")
    assert page.errors == []


def test_pin_hide_and_supernodes_survive_save_and_export(served, page, graph_file):
    _open(page, served, graph_file)
    page.click("#g-map .gnode[data-node='0_3_2']")
    page.click("#g-map .gnode[data-node='1_5_4']", modifiers=["Shift"])
    page.fill("#g-sn-name", "Mary mover")
    page.click("#g-group")
    page.wait_for_selector("#g-map rect.gsuper[data-name='Mary mover']")
    assert page.inner_text("#g-supernodes").startswith("Mary mover")
    page.click("#g-map .gnode[data-node='1_2_2']")
    page.click("#g-pin")
    assert "pinned" in page.get_attribute("#g-map .gnode[data-node='1_2_2']", "class")
    assert "1_2_2" in page.inner_text("#g-pinned")
    page.click("#g-map .gnode[data-node='0_7_4']")
    page.click("#g-hide")
    assert page.locator("#g-map .gnode").count() == 11
    assert page.locator("#g-map .glink").count() == 10  # its two links go with it
    assert page.locator("#g-map .gnode[data-node='0_7_4']").count() == 0
    with page.expect_download() as dl:
        page.click("#g-export")
    exported = json.loads(Path(dl.value.path()).read_text())
    original = json.loads(FIXTURE.read_text())
    assert dl.value.suggested_filename == "mary-john.json"
    assert exported["nodes"] == original["nodes"] and exported["links"] == original["links"]
    assert exported["metadata"] == original["metadata"]
    q = exported["qParams"]
    assert q["pinnedIds"] == ["1_2_2"] and q["hiddenIds"] == ["0_7_4"]
    assert q["supernodes"] == [["Mary mover", "0_3_2", "1_5_4"]]
    assert q["linkType"] == "both"
    if CT_PYTHON.exists():  # circuit-tracer 0.5.0's own model of the file accepts it
        _circuit_tracer_reads(Path(dl.value.path()), q)
    page.click("#g-save")
    page.wait_for_function("document.querySelector('#g-hover').textContent.startsWith('saved')")
    saved = json.loads(graph_file.read_text())
    assert saved["qParams"]["supernodes"] == q["supernodes"]
    assert saved["nodes"] == original["nodes"]
    _open(page, served, graph_file)  # a reload shows the saved state
    assert page.locator("#g-map .gnode").count() == 11
    assert page.locator("#g-map rect.gsuper[data-name='Mary mover']").count() == 1
    assert "pinned" in page.get_attribute("#g-map .gnode[data-node='1_2_2']", "class")
    page.click("#g-unhide")
    assert page.locator("#g-map .gnode").count() == 12
    page.click("#g-supernodes button")  # ungroup
    assert page.locator("#g-map rect.gsuper").count() == 0 and page.errors == []


def test_intervention_round_trip(served, page, traced_file, transcoders_file, view_session):
    import torch

    from acdc_engine.features import load_any
    from acdc_engine.features.interventions import FeatureEdit, intervene

    _open(page, served, traced_file)
    page.click("#g-intervene")  # nothing selected: a one-line error, no request
    assert "select one or more feature nodes" in page.inner_text("#error")
    page.click("#g-map .gnode[data-node='1_5_4']")
    page.click("#g-map .gnode[data-node='0_3_2']", modifiers=["Shift"])
    page.select_option("#g-mode", "clamp")
    page.fill("#g-value", "40")
    page.click("#g-intervene")
    page.wait_for_selector("#g-predictions[data-status='200'] table")
    rows = page.locator("#g-predictions tr").all_inner_texts()[1:]
    assert page.locator("#g-predictions .moved .tok").count() == 5
    # the same intervention in Python: both features clamped at their positions
    tc = load_any(transcoders_file)
    edits = [FeatureEdit(1, 5, mode="clamp", value=40.0, positions=(4,)),
             FeatureEdit(0, 3, mode="clamp", value=40.0, positions=(2,))]
    want = intervene(view_session.model, tc, torch.tensor(PROMPT_IDS), edits)
    assert len(rows) == len(want.top_before[0]) == 5
    for row, (tb, pb), (ta, pa) in zip(rows, want.top_before[0], want.top_after[0]):
        cells = row.split("\t")
        assert json.loads(cells[0]) == tb and float(cells[1]) == pytest.approx(pb, rel=2e-3)
        assert json.loads(cells[2]) == ta and float(cells[3]) == pytest.approx(pa, rel=2e-3)
    assert want.top_before[0] != want.top_after[0]  # the clamp changes the output
    assert "clamp 1_5_4, 0_3_2 to 40" in page.inner_text("#g-predictions")
    page.click("#g-map .gnode[data-node='3_5335_4']")  # a logit cannot be intervened on
    page.click("#g-intervene")
    assert "select one or more feature nodes" in page.inner_text("#error")
    assert page.errors == []


def test_transcoders_given_to_the_page(served, page, view_session, traced_file,
                                      transcoders_file):
    """A graph that names no transcoders, with ``acdc view --transcoders`` (the page's URL
    carries them; the file must be where the page may read)."""
    data = json.loads(traced_file.read_text())
    del data["metadata"]["transcoders"]
    traced_file.write_text(json.dumps(data))
    page.goto(graph_url(served, traced_file, transcoders_file))
    page.wait_for_selector("#g-map[data-ready='1']")
    page.click("#g-map .gnode[data-node='1_5_4']")
    page.wait_for_function("!document.querySelector('#g-card-body').textContent"
                           ".includes('loading the card')")
    assert "is outside the folders the viewer may read" in page.inner_text("#g-card-body")
    view_session.allow(transcoders_file)  # what acdc view --transcoders does
    page.click("#g-map .gnode[data-node='0_3_2']")
    page.wait_for_selector("#g-card-body .density")
    assert page.errors == []


def test_transcoders_that_do_not_fit_the_graph_are_refused(served, traced_file):
    data = json.loads(traced_file.read_text())
    node = next(n for n in data["nodes"] if n["node_id"] == "1_5_4")
    node["activation"] += 0.05  # not what these transcoders give on the prompt
    traced_file.write_text(json.dumps(data))
    status, _, body = _req(served, "POST", "/api/graph/intervene", json.dumps(
        {"file": str(traced_file), "nodes": ["1_5_4"]}), Content_Type="application/json",
        X_ACDC_Token=served.secret)
    assert status == 501 and "do not give the graph's feature activations" in body
    status, _, body = _req(served, "GET", f"/api/graph/feature?file={quote(str(traced_file))}"
                           "&node=1_5_4")
    out = json.loads(body)
    assert status == 200 and out["card"] is None and "do not give" in out["card_message"]


def test_cards_and_interventions_at_once(served, traced_file):
    """Requests run in worker threads and a spliced run hooks the model's MLPs: they take
    turns on the model (the session's lock), none sees another's forward."""
    from concurrent.futures import ThreadPoolExecutor

    ref = quote(str(traced_file))
    body = json.dumps({"file": str(traced_file), "nodes": ["1_5_4"], "mode": "clamp",
                       "value": 9})

    def call(i):
        if i % 2:
            return _req(served, "POST", "/api/graph/intervene", body,
                        Content_Type="application/json", X_ACDC_Token=served.secret)
        node = ["1_5_4", "0_3_2", "0_7_4", "1_2_2"][i // 2 % 4]
        return _req(served, "GET", f"/api/graph/feature?file={ref}&node={node}")

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(call, range(16)))
    assert [status for status, _, _ in answers] == [200] * 16, answers[0][2]
    afters = {json.dumps(json.loads(b)["after"]) for i, (_, _, b) in enumerate(answers) if i % 2}
    assert len(afters) == 1  # the same answer every time
    assert all(json.loads(b)["card"]["density"] > 0 for i, (_, _, b) in enumerate(answers)
               if not i % 2)


# ----- the server's side ---------------------------------------------------------------------
def _req(server, method, path, body=None, **headers):
    from test_view_security import request

    return request(server, method, path, body, **headers)


def test_other_origins_and_files_outside_are_refused(served, graph_file, tmp_path):
    ref = quote(str(graph_file))
    status, headers, body = _req(served, "GET", f"/api/graph?file={ref}")
    assert status == 200 and json.loads(body)["graph"]["metadata"]["slug"] == "mary-john"
    assert "content-security-policy" in headers
    evil = {"Origin": "http://evil.example"}
    for path in (f"/api/graph?file={ref}", f"/graph?file={ref}",
                 f"/api/graph/feature?file={ref}&node=1_5_4"):
        status, _, body = _req(served, "GET", path, **evil)
        assert status == 403 and "another origin" in json.loads(body)["message"]
    save = json.dumps({"file": str(graph_file), "qParams": {"pinnedIds": ["1_5_4"]}})
    assert _req(served, "POST", "/api/graph/save", save, Content_Type="text/plain")[0] == 415
    assert _req(served, "POST", "/api/graph/save", save, Content_Type="application/json")[0] \
        == 403
    assert _req(served, "POST", "/api/graph/save", save, Content_Type="application/json",
                X_ACDC_Token=served.secret, **evil)[0] == 403
    assert json.loads(graph_file.read_text())["qParams"]["pinnedIds"] == []  # unchanged
    outside = tmp_path / "elsewhere.json"
    shutil.copy(FIXTURE, outside)
    status, _, body = _req(served, "GET", f"/api/graph?file={quote(str(outside))}")
    assert status == 400 and "outside the folders the viewer may read" in body
    status, _, body = _req(served, "POST", "/api/graph/save", json.dumps(
        {"file": str(graph_file), "qParams": {"pinnedIds": ["nope"]}}),
        Content_Type="application/json", X_ACDC_Token=served.secret)
    assert status == 400 and "node ids of the graph" in body
    status, _, body = _req(served, "POST", "/api/graph/intervene", json.dumps(
        {"file": str(graph_file), "nodes": ["1_5_4"]}), Content_Type="application/json",
        X_ACDC_Token=served.secret)
    assert status == 501 and json.loads(body)["ok"] is False  # the graph names no transcoders
    status, _, body = _req(served, "POST", "/api/graph/intervene", json.dumps(
        {"file": str(graph_file), "nodes": ["E_290_3"]}), Content_Type="application/json",
        X_ACDC_Token=served.secret)
    assert status == 400 and "embedding node; only dictionary features" in body


def test_the_page_works_behind_a_token(view_session, page, graph_file):
    server = view_session.serve(token="t0k")
    try:
        _open(page, server, graph_file)  # the URL carries ?token=...; the page's requests too
        page.click("#g-map .gnode[data-node='0_3_2']")
        page.click("#g-pin")
        page.click("#g-save")
        page.wait_for_function("document.querySelector('#g-hover').textContent"
                               ".startsWith('saved')")
        assert json.loads(graph_file.read_text())["qParams"]["pinnedIds"] == ["0_3_2"]
        page.goto(graph_url(server, graph_file).replace("token=t0k", "token=wrong"))
        assert "a token is needed" in page.inner_text("body") and page.errors == []
    finally:
        server.stop()


def test_the_page_runs_under_the_strict_policy(served, strict_page, graph_file):
    strict_page.goto(graph_url(served, graph_file))
    strict_page.wait_for_selector("#g-map[data-ready='1']")
    assert strict_page.locator("#g-map .gnode").count() == 12 and strict_page.errors == []


def test_bad_graph_files_are_one_line_errors(tmp_path):
    good = json.loads(FIXTURE.read_text())
    cases = {
        "not-json.json": ("{nodes: [", "not JSON"),
        "no-links.json": (json.dumps({**good, "links": None}), "no 'links' list"),
        "bad-ctx.json": (json.dumps({**good, "nodes": [{**good["nodes"][0], "ctx_idx": 9}]}),
                         "outside the prompt's 5 tokens"),
        "dangling.json": (json.dumps({**good, "links": [{"source": "x", "target": "0_3_2",
                                                         "weight": 1.0}]}),
                          "link 0's source 'x' is not a node"),
    }
    for name, (text, msg) in cases.items():
        p = tmp_path / name
        p.write_text(text)
        with pytest.raises(AcdcError, match=msg) as e:
            read_graph(p)
        assert str(p) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(AcdcError, match="no graph file"):
        read_graph(tmp_path / "missing.json")


def test_cli_refuses_a_bad_graph_before_loading_a_model(tmp_path, capsys):
    from acdc_engine.cli import main

    bad = tmp_path / "graph.json"
    bad.write_text(json.dumps({"nodes": [], "links": []}))
    assert main(["view", "--graph", str(bad), "--port", "0", "--no-browser"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {bad}: not circuit-tracer's graph JSON: no 'metadata' object"
    assert main(["view", "--graph", str(tmp_path / "none.json"), "--no-browser"]) == 2
    assert "no graph file" in capsys.readouterr().err
    assert main(["view", "--graph", str(FIXTURE), "--transcoders", str(tmp_path / "no-tc"),
                 "--no-browser"]) == 2
    assert capsys.readouterr().err.strip() == \
        f"error: --transcoders {tmp_path / 'no-tc'}: no such file or folder"


# ----- graphs the engine traces ------------------------------------------------------------
@pytest.mark.slow
def test_a_graph_acdc_traces_opens_with_cards_and_interventions(served, page, gpt2,
                                                                transcoders_file):
    """The engine's own trace (features.attribution_graph) of a prompt on the tiny GPT-2, its
    circuit-tracer JSON naming the transcoders: drawn whole, cards, an ablation."""
    from acdc_engine.features import load_any
    from acdc_engine.features.attribution_graph import trace
    from acdc_engine.features.interventions import FeatureEdit, intervene
    from acdc_engine.testing.builders import WORDS

    tc = load_any(transcoders_file)
    graph = trace(gpt2, " ".join(WORDS[:6]), tc)
    path = graph.to_circuit_tracer_json(Path(os.environ["ACDC_RESULTS"]) / "graphs", slug="tiny",
                                        node_threshold=0.9, tokenizer=gpt2.tokenizer)
    data = json.loads(path.read_text())
    data["metadata"]["transcoders"] = str(transcoders_file)
    path.write_text(json.dumps(data))
    _open(page, served, path)
    assert page.locator("#g-map .gnode").count() == len(data["nodes"])
    assert page.locator("#g-map .glink").count() == len(data["links"])
    feats = [n for n in data["nodes"] if n["feature_type"] == "cross layer transcoder"]
    assert feats, "the pruned graph keeps some features"
    top = min(feats, key=lambda n: n["influence"])
    page.click(f"#g-map .gnode[data-node='{top['node_id']}']")
    page.wait_for_selector("#g-card-body .density")
    page.click("#g-intervene")  # ablate (the default)
    page.wait_for_selector("#g-predictions[data-status='200'] table")
    layer, feat, pos = map(int, top["node_id"].split("_"))
    want = intervene(gpt2, tc, graph.input_tokens, [FeatureEdit(layer, feat, positions=(pos,))])
    rows = page.locator("#g-predictions tr").all_inner_texts()[1:]
    for row, (ta, pa) in zip(rows, want.top_after[0]):
        cells = row.split("\t")
        assert json.loads(cells[2]) == ta and float(cells[3]) == pytest.approx(pa, rel=2e-3)
    assert want.top_after[0] != want.top_before[0] and page.errors == []


def _quantize(png: Path) -> None:
    """Rewrite a screenshot with 128 colours (a third of the bytes, the same to the eye)."""
    from PIL import Image

    im = Image.open(png).convert("RGB")
    im.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(png, optimize=True)


IOI_PROMPT = "When Mary and John went to the store, John gave a drink to"


@pytest.mark.slow
def test_shipped_model_graph_in_the_page(browser, tmp_path):
    """gpt2-ioi-bpe's graph of an IOI prompt under its shipped transcoders, as acdc trace
    writes it (no metadata.transcoders: the page finds the shipped ones by their
    activations): drawn whole, the top feature's card readable, its ablation lowers the
    answer. With ACDC_DOCS_IMG=docs/img the pictures of docs/features.md are saved there."""
    import torch

    from acdc_engine.features.attribution_graph import trace
    from acdc_engine.features.shipped import shipped_transcoders
    from acdc_engine.view import Session

    torch.set_num_threads(1)
    s = Session.open("gpt2-ioi-bpe", "ioi-names", n_examples=8)
    graph = trace(s.model, IOI_PROMPT, shipped_transcoders())
    path = graph.to_circuit_tracer_json(Path(os.environ["ACDC_RESULTS"]) / "graphs",
                                        slug="ioi", tokenizer=s.model.tokenizer)
    data = json.loads(path.read_text())
    feats = sorted((n for n in data["nodes"] if n["feature_type"] == "cross layer transcoder"),
                   key=lambda n: n["influence"])
    answer = next(n for n in data["nodes"] if n.get("is_target_logit"))
    assert answer["clerp"].startswith('Output " Mary"') and len(feats) >= 3
    server = s.serve()
    try:
        page = browser.new_page(viewport={"width": 1400, "height": 860})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        _open(page, server, path)
        assert page.locator("#g-map .gnode").count() == len(data["nodes"])
        assert page.locator("#g-map .glink").count() == len(data["links"])
        top = feats[0]["node_id"]
        page.click(f"#g-map .gnode[data-node='{top}']")
        page.wait_for_selector("#g-card-body .density", timeout=120_000)
        density = float(page.get_attribute("#g-card-body .density", "data-value"))
        assert 0 < density < 1 and page.locator("#g-card-body .ctx").count() >= 3
        assert page.locator("#g-card-body .promotes .tok").count() == 8
        page.click("#g-intervene")  # ablate it
        page.wait_for_selector("#g-predictions[data-status='200'] table", timeout=120_000)
        before, after = (float(page.locator("#g-predictions tr").nth(1).locator("td")
                               .nth(i).inner_text()) for i in (1, 3))
        assert '" Mary"' in page.locator("#g-predictions tr").nth(1).inner_text()
        assert after != before
        for n in feats[1:3]:
            page.click(f"#g-map .gnode[data-node='{n['node_id']}']", modifiers=["Shift"])
        page.fill("#g-sn-name", "top features")
        page.click("#g-group")
        page.click(f"#g-map .gnode[data-node='{top}']")
        page.click("#g-pin")
        page.wait_for_selector("#g-card-body .density", timeout=120_000)
        page.wait_for_selector("#busy", state="hidden")
        page.hover(f"#g-map .gnode[data-node='{feats[1]['node_id']}']")
        out = Path(os.environ.get("ACDC_DOCS_IMG") or tmp_path)
        out.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out / "graph-page.png"), full_page=True)
        page.locator("#g-side").screenshot(path=str(out / "graph-card.png"))
        for png in ("graph-page.png", "graph-card.png"):
            _quantize(out / png)
        assert errors == []
    finally:
        server.stop()
