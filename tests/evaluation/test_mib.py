"""MIB circuit files and MIB's CPR/CMD: names, the file format against EAP-IG's graph, the
arithmetic of MIB's evaluation, MIB task data, and the write-read-evaluate round trip."""

from __future__ import annotations

import json

import pytest
import torch

from acdc_engine.errors import AcdcError, TaskDataError
from acdc_engine.evaluation.mib import (
    MIB_PERCENTAGES,
    engine_edge,
    engine_node,
    mib_areas,
    mib_counts,
    mib_curve,
    mib_edge,
    mib_node,
    read_mib,
    to_mib,
    write_mib,
)
from acdc_engine.evaluation.mib_data import mib_rows_to_pairs, read_mib_rows, write_mib_pairs
from acdc_engine.graph import Graph
from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.tasks import prepare
from acdc_engine.testing import random_pairs


def eap_ig_edge_names(n_layers: int, n_heads: int, parallel: bool) -> list[str]:
    """The edge names of EAP-IG's ``Graph.from_model`` (hannamw/EAP-IG src/eap/graph.py),
    re-traced: the residual stream grows by each layer's heads and MLP."""
    out, stream = [], ["input"]
    for layer in range(n_layers):
        heads = [f"a{layer}.h{h}" for h in range(n_heads)]
        mlp = f"m{layer}"
        out += [f"{u}->{a}<{q}>" for u in stream for a in heads for q in "qkv"]
        if parallel:
            out += [f"{u}->{mlp}" for u in stream]
            stream = stream + heads + [mlp]
        else:
            stream = stream + heads
            out += [f"{u}->{mlp}" for u in stream]
            stream = stream + [mlp]
    out += [f"{u}->logits" for u in stream]
    return out


@pytest.mark.parametrize("shape", [(2, 3, False), (3, 2, True), (1, 1, False)])
def test_edges_are_eap_igs(shape):
    g = Graph(shape[0], shape[1], parallel=shape[2])
    ours = [mib_edge(e.name) for e in g.edges]
    assert sorted(ours) == sorted(eap_ig_edge_names(*shape))
    assert [engine_edge(n) for n in ours] == [e.name for e in g.edges]


def test_node_and_edge_names():
    assert mib_node("a3.11") == "a3.h11" and engine_node("a3.h11") == "a3.11"
    assert mib_node("m2") == "m2" and mib_node("input") == "input"
    assert mib_edge("a0.1->a2.3<q>") == "a0.h1->a2.h3<q>"
    assert engine_edge("input->a0.h0<v>") == "input->a0.0<v>"
    assert engine_edge("a1.h2->logits") == "a1.2->logits"
    with pytest.raises(AcdcError, match="not an edge name"):
        engine_edge("a0.h1")


def test_file_round_trip_is_exact(tmp_path):
    g = Graph(2, 3)
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(g.n_edges, generator=gen) * 1e-3
    scores[5] = float("nan")
    keep = torch.zeros(g.n_edges, dtype=torch.bool)
    keep[[g.edge_index["input->a0.1<k>"], g.edge_index["a0.1->logits"]]] = True
    path = write_mib(tmp_path / "c.json", g, scores, keep, d_model=16)
    data = json.loads(path.read_text())
    assert data["cfg"] == {"n_layers": 2, "n_heads": 3, "parallel_attn_mlp": False,
                           "d_model": 16}
    assert data["edges"]["input->a0.h1<k>"] == {"score": float(scores[g.edge_index[
        "input->a0.1<k>"]]), "in_graph": True}
    assert data["nodes"]["a0.h1"] == {"in_graph": True}
    assert data["nodes"]["a0.h0"] == {"in_graph": False}
    assert data["nodes"]["logits"] == {"in_graph": True}
    back = read_mib(path)
    assert back.graph == g and torch.equal(back.keep, keep)
    assert torch.equal(back.scores[~scores.isnan()], scores[~scores.isnan()])
    assert back.scores.isnan().tolist() == scores.isnan().tolist()


def test_attention_only_and_bad_files(tmp_path):
    g = Graph(2, 1, attn_only=True)
    s = torch.arange(g.n_edges, dtype=torch.float32)
    p = write_mib(tmp_path / "t.json", g, s)
    assert json.loads(p.read_text())["cfg"]["attn_only"] is True
    assert read_mib(p).graph == g
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"nodes": [], "edges": []}))
    with pytest.raises(AcdcError, match="not a MIB circuit file"):
        read_mib(bad)
    d = to_mib(g, s)
    d["edges"]["a5.h0->logits"] = {"score": 1.0, "in_graph": False}
    bad.write_text(json.dumps(d))
    with pytest.raises(AcdcError, match="does not have"):
        read_mib(bad)
    with pytest.raises(AcdcError, match="no token positions"):
        to_mib(g.with_positions(["A", "B"]), torch.zeros(2 * g.n_edges))


def test_mib_counts_and_areas_as_mib_computes_them():
    # int(p * n): floor, zero allowed (MIB's apply_topn(int(pct * n_scored_items)))
    assert mib_counts(46) == [0, 0, 0, 0, 0, 2, 4, 9, 23, 46]
    assert mib_counts(32491) == [32, 64, 162, 324, 649, 1624, 3249, 6498, 16245, 32491]
    f = [0.0, 0.1, 0.2, 0.3, 0.5, 0.6, 0.8, 0.9, 1.2, 1.0]
    cpr, cmd = mib_areas(MIB_PERCENTAGES, f)
    want_cpr = sum((MIB_PERCENTAGES[i + 1] - MIB_PERCENTAGES[i]) * (f[i] + f[i + 1]) / 2
                   for i in range(9))
    want_cmd = sum((MIB_PERCENTAGES[i + 1] - MIB_PERCENTAGES[i])
                   * (abs(1 - f[i]) + abs(1 - f[i + 1])) / 2 for i in range(9))
    assert cpr == want_cpr and cmd == want_cmd
    # the last two segments by hand: 0.3 * (0.9 + 1.2) / 2 + 0.5 * (1.2 + 1.0) / 2
    tail = mib_areas(MIB_PERCENTAGES[-3:], f[-3:])
    assert tail[0] == pytest.approx(0.3 * 2.1 / 2 + 0.5 * 2.2 / 2)
    assert tail[1] == pytest.approx(0.3 * 0.3 / 2 + 0.5 * 0.2 / 2)


# ----- MIB task data ----------------------------------------------------------------------------
IOI_ROW = {"prompt": "When Mary and John went to the store , John gave a drink to",
           "metadata": {"indirect_object": "Mary", "subject": "John", "random_c": "Kate"},
           "s2_io_flip_counterfactual": {
               "prompt": "When Mary and John went to the store , Mary gave a drink to"},
           "abc_counterfactual": {
               "prompt": "When Anna and Paul went to the store , Kate gave a drink to"}}
MCQA_ROW = {"prompt": "Q: The sky is blue. What color is the sky?\nA. red\nB. blue\nAnswer:",
            "choices": {"label": ["A", "B"], "text": ["red", "blue"]}, "answerKey": 1,
            "symbol_counterfactual": {"prompt": "Q: ...\nA. blue\nB. red\nAnswer:",
                                      "choices": {"label": ["A", "B"]}, "answerKey": 0}}
ARITH_ROW = {"prompt": "12+5=", "label": 17, "operator": "+",
             "random_counterfactual": {"prompt": "31+2=", "label": 33}}


def test_mib_rows_map_to_pairs(tmp_path):
    pairs = mib_rows_to_pairs([IOI_ROW, MCQA_ROW, ARITH_ROW])
    assert pairs[0] == {"clean": IOI_ROW["prompt"],
                        "corrupted": IOI_ROW["s2_io_flip_counterfactual"]["prompt"],
                        "answer": " Mary", "wrong_answer": " John"}
    assert pairs[1]["answer"] == "B" and pairs[1]["wrong_answer"] == "A"
    assert pairs[2]["answer"] == "17" and pairs[2]["wrong_answer"] == "33"
    abc = mib_rows_to_pairs([IOI_ROW], counterfactual="abc_counterfactual")[0]
    assert abc["corrupted"].startswith("When Anna and Paul")
    # JSON list, {"data": [...]}, and JSON Lines read the same rows
    for text in (json.dumps([IOI_ROW, ARITH_ROW]), json.dumps({"data": [IOI_ROW, ARITH_ROW]}),
                 json.dumps(IOI_ROW) + "\n\n" + json.dumps(ARITH_ROW) + "\n"):
        (tmp_path / "d.json").write_text(text)
        assert read_mib_rows(tmp_path / "d.json") == [IOI_ROW, ARITH_ROW]
    with pytest.raises(TaskDataError) as e:
        mib_rows_to_pairs([IOI_ROW, {"prompt": "x"}, {**ARITH_ROW, "random_counterfactual": 3}])
    assert "row 2" in str(e.value) and "row 3" in str(e.value) and "row 1" not in str(e.value)


# ----- the round trip on a model: write, read, evaluate ------------------------------------------
@pytest.fixture(scope="module")
def tiny_ioi_run(tmp_path_factory):
    from acdc_engine import discover

    out = tmp_path_factory.mktemp("mib") / "run"
    r = discover("tiny-ioi", "ioi", "eap", n_edges=30, n_examples=16, out=out, track=False,
                 render=False, progress=False)
    return r, out


def test_round_trip_gives_identical_cpr_cmd(tiny_ioi_run, tmp_path):
    from acdc_engine.api.mib import evaluate_mib, export_mib
    from acdc_engine.api.setup import build_problem, load_model, load_task

    result, out = tiny_ioi_run
    folder = export_mib(str(out), tmp_path / "submission", model="tiny")
    assert folder == tmp_path / "submission" / "ioi_tiny"
    path = folder / "importances.json"
    assert sorted(f.name for f in folder.iterdir()) == ["importances.json"]
    from acdc_engine.records import read_scores

    back = read_mib(path)
    saved = read_scores(out / "edge_scores.tsv", result.graph)  # the run's record (6 digits)
    # MIB's sign: positive supports the behaviour; logit_diff's supporting edges score < 0
    assert result.params["metric"] == "logit_diff"
    assert torch.equal(back.scores, -saved)
    assert torch.allclose(saved, result.scores, rtol=1e-5, atol=0)
    assert torch.equal(back.keep, result.circuit.keep)
    assert json.loads(path.read_text())["cfg"]["d_model"] > 0

    lm = load_model("tiny-ioi")
    problem, _ = build_problem(lm, load_task("ioi"), n_examples=16)
    direct, _ = mib_curve(problem, -saved)
    ev = evaluate_mib(path, "tiny-ioi", "ioi", n_examples=16)
    assert (ev.mib.cpr, ev.mib.cmd) == (direct.cpr, direct.cmd)
    assert ev.mib.faithfulness == direct.faithfulness
    assert ev.mib.requested == tuple(mib_counts(problem.graph.n_edges))
    assert (ev.engine.cpr, ev.engine.cmd) == pytest.approx((result.curve.cpr, result.curve.cmd))
    assert ev.circuit.normalized == pytest.approx(result.faithfulness.normalized, abs=1e-6)
    assert ev.mib.faithfulness[-1] == pytest.approx(1.0, abs=1e-5)  # 100%: the full model
    # |score| ranking does not see the sign; MIB's signed ranking puts supporting edges first
    signed, _ = mib_curve(problem, -saved, absolute=False)
    wrong_way, _ = mib_curve(problem, saved, absolute=False)
    assert signed.cpr > wrong_way.cpr


def test_mib_data_file_is_a_task(tmp_path):
    from acdc_engine.api.mib import mib_task
    from acdc_engine.evaluation.mib import write_mib

    src = [json.loads(line) for line in
           open("tasks/acdc_tasks/data/ioi_pairs.jsonl", encoding="utf-8")][:6]
    rows = [{"prompt": r["clean"], "metadata": {"indirect_object": r["answer"].strip(),
                                                 "subject": r["wrong_answer"].strip()},
             "s2_io_flip_counterfactual": {"prompt": r["corrupted"]}} for r in src]
    data = tmp_path / "ioi_mib.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = write_mib_pairs(data, tmp_path / "pairs.jsonl")
    got = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert got == [{k: r[k] for k in ("clean", "corrupted", "answer", "wrong_answer")}
                   for r in src]
    from acdc_engine.api.mib import evaluate_mib
    from acdc_engine.api.setup import load_model

    g = load_model("tiny-ioi").graph
    c = write_mib(tmp_path / "c.json", g, torch.linspace(-1, 1, g.n_edges))
    a = evaluate_mib(c, "tiny-ioi", mib_data=data)
    b = evaluate_mib(c, "tiny-ioi", str(pairs))
    assert (a.mib.cpr, a.mib.cmd) == (b.mib.cpr, b.mib.cmd)
    assert a.params["n_examples"] == 6 and mib_task(data, None, tmp_path / "t").endswith(
        "ioi_mib.jsonl")


def test_multi_circuit_submission_round_trip_gives_identical_cpr_cmd(tiny_ioi_run, tmp_path):
    """MIB's other kind of submission: 9 circuit files (0.1 % ... 50 % of edges, no scores),
    read back and evaluated, give exactly the curve of the scores they came from."""
    from acdc_engine.api.mib import evaluate_mib, export_mib
    from acdc_engine.api.setup import build_problem, load_model, load_task
    from acdc_engine.evaluation.mib import mib_circuits_curve
    from acdc_engine.evaluation.mib_submission import (
        MIB_CIRCUIT_PERCENTAGES,
        read_submission,
    )
    from acdc_engine.records import read_scores

    result, out = tiny_ioi_run
    folder = export_mib(str(out), tmp_path / "sub", task="arc_easy", model="tiny",
                        circuits=True)
    assert folder == tmp_path / "sub" / "arc-easy_tiny"
    names = sorted(f.name for f in folder.iterdir())
    assert names == sorted(f"circuit_{p}.json" for p in
                           ("0.001", "0.002", "0.005", "0.01", "0.02", "0.05", "0.1", "0.2",
                            "0.5"))
    assert MIB_CIRCUIT_PERCENTAGES == (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
    sub = read_submission(folder)
    g = sub.graph
    assert sorted(sub.circuits) == list(MIB_CIRCUIT_PERCENTAGES) and sub.importances is None
    for p, f in sub.circuits.items():
        assert not f.has_scores  # circuits carry no scores (MIB's README)
        assert int(f.keep.sum()) <= int(p * g.n_edges)
        data = json.loads((folder / f"circuit_{p}.json").read_text())
        assert all(set(e) == {"in_graph"} for e in data["edges"].values())
    assert int(sub.circuits[0.5].keep.sum()) > int(sub.circuits[0.1].keep.sum()) > 0

    scores = -read_scores(out / "edge_scores.tsv", result.graph)  # MIB's sign, as exported
    problem, _ = build_problem(load_model("tiny-ioi"), load_task("ioi"), n_examples=16)
    direct, _ = mib_curve(problem, scores)
    back, _ = mib_circuits_curve(problem, sub.keeps())
    assert back.percentages == direct.percentages and back.kept == direct.kept
    assert back.faithfulness == direct.faithfulness
    assert (back.cpr, back.cmd) == (direct.cpr, direct.cmd)
    ev = evaluate_mib(folder, "tiny-ioi", "ioi", n_examples=16, log_scale=True)
    logged, _ = mib_curve(problem, scores, log_scale=True)
    assert (ev.mib.cpr, ev.mib.cmd) == (logged.cpr, logged.cmd)
    assert logged.cmd != direct.cmd  # log p weighs the small circuits more
    assert "9 circuits" in ev.summary()


def test_submission_folders_refused_in_one_line(tmp_path, gpt2):
    from acdc_engine.evaluation.mib import mib_circuits_curve
    from acdc_engine.evaluation.mib_submission import read_submission, write_submission

    g = gpt2.graph
    scores = torch.linspace(-1, 1, g.n_edges)
    folder = write_submission(tmp_path, "ioi", "m", g, scores, circuits=True)
    write_submission(tmp_path, "ioi", "m", g, scores)  # now both kinds in one folder
    for bad in (folder, tmp_path / "nothing_here", tmp_path):
        with pytest.raises(AcdcError) as e:
            read_submission(bad)
        assert "\n" not in str(e.value)
    with pytest.raises(AcdcError, match="model name"):
        write_submission(tmp_path, "ioi", "my_model", g, scores)
    problem = Problem.build(gpt2, prepare("t", gpt2.tokenizer, random_pairs(2, seed=1)),
                            registry().metric("logit_diff"), "corrupted")
    with pytest.raises(AcdcError, match="at most"):
        mib_circuits_curve(problem, {0.1: torch.ones(g.n_edges, dtype=torch.bool)})
