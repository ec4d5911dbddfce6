"""Position-aware circuits end to end: ACDC, circuit files, comparison, pictures, the CLI."""

from __future__ import annotations

import json
import pytest
import torch

from acdc_engine.circuit import Circuit
from acdc_engine.errors import AcdcError
from acdc_engine.evaluation.compare import compare_circuits
from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.scoring import attribute
from acdc_engine.scoring.acdc import AcdcConfig, acdc_naive
from acdc_engine.tasks import prepare
from acdc_engine.testing.numerics import EPS32, assert_close_to_f64
from split_rows import named_rows


_rows = named_rows


@pytest.fixture(scope="module")
def problem(gpt2):
    data = prepare("t", gpt2.tokenizer, _rows())
    return Problem.build(gpt2, data, registry().metric("kl_div"), "corrupted", batch_size=8,
                         positions="named")


def test_acdc_on_split_edges(problem):
    """ACDC tests every split edge; the logits read END only, so every edge into the logits
    at another position goes (removing it changes nothing), and the kept circuit's metric is
    the one ACDC ended with."""
    g = problem.graph
    res = acdc_naive(problem, AcdcConfig(tau=0.002, progress=False))
    assert res.complete and res.keep.shape == (g.n_edges,)
    for e in g.edges:
        if e.dst.name == "logits" and e.pos != "END":
            assert not res.keep[g.edge_index[e.name]], e.name
    assert res.keep.any()
    (value,) = problem.evaluate([g.to_dense(res.keep.float())])
    # ACDC's final metric is this very evaluation of the kept mask: bit for bit
    assert value == res.metric_final


def test_registered_acdc_takes_positions(problem):
    out = registry().method("acdc").run(problem, registry().method("acdc").configure(
        {"tau": 0.002}), False)
    assert out.keep.shape == (problem.graph.n_edges,)
    with pytest.raises(AcdcError, match="position-aware"):
        m = registry().method("acdc-guided")
        m.run(problem, m.configure({"tau": 0.002}), False)


def test_circuit_round_trip_split_compare_and_draw(problem, tmp_path):
    g = problem.graph
    scores = attribute(problem.with_metric(registry().metric("kl_div")), "eap", progress=False)
    c = Circuit.top(g, scores, 40, task="t", method="eap")
    assert all("@" in n for n in c.edge_names)
    back = Circuit.load(c.save(tmp_path / "circuit.json"))
    assert back.graph == g and back.edge_names == c.edge_names
    assert torch.equal(back.keep, c.keep)
    data = json.loads((tmp_path / "circuit.json").read_text())
    assert data["graph"]["positions"] == ",".join(g.positions)
    assert {e["pos"] for e in data["edges"]} <= set(g.positions)
    # per position and unsplit views
    end = c.at("END")
    assert end.graph == g.base and end.number_of_edges() == dict(c.positions_used())["END"]
    un = c.unsplit()
    assert un.number_of_edges() <= c.number_of_edges()
    assert set(un.edge_names) == {n.split("@")[0] for n in c.edge_names}
    # comparison: by split edge, per position; against an unsplit circuit, with a warning
    other = Circuit.top(g, scores, 20)
    diff = compare_circuits(c, other)
    assert set(diff.shared) == set(other.edge_names) and diff.positions  # top-20 in top-40
    assert "by position:" in diff.summary()
    mixed = compare_circuits(c, un)
    assert mixed.edge_jaccard == 1.0 and any("split by position" in w for w in mixed.warnings)
    # pictures: the overview and one diagram per position with edges
    from acdc_engine.render import render_circuit

    paths = render_circuit(c, tmp_path / "pics")
    names = {p.name for p in paths}
    assert "circuit.svg" in names and "circuit_at_END.svg" in names
    assert len([n for n in names if n.endswith(".svg")]) == 1 + len(c.positions_used())
    assert "at position END" in (tmp_path / "pics" / "circuit_at_END.svg").read_text()


def test_discover_cli_with_positions(gpt2_path, tmp_path, capsys):
    from acdc_engine.cli import main

    task = tmp_path / "pairs.jsonl"
    task.write_text("\n".join(json.dumps(r) for r in _rows(6)) + "\n")
    out = tmp_path / "run"
    rc = main(["discover", "--model", str(gpt2_path), "--task", str(task), "--method", "eap",
               "--metric", "kl_div", "--positions", "END,A", "--edges", "30", "--out", str(out),
               "--no-progress", "--no-track"])
    assert rc == 0
    c = Circuit.load(out / "circuit.json")
    assert c.graph.positions == ("A", "END", "other")
    assert c.number_of_edges() <= 30 and c.attrs["position_split"] == "END,A"
    assert (out / "circuit.svg").exists() and (out / "circuit_at_END.svg").exists()
    assert "at positions" in capsys.readouterr().out
    # the circuit still works across models, next to an unsplit circuit of the same task
    plain = tmp_path / "plain"
    assert main(["discover", "--model", str(gpt2_path), "--task", str(task), "--method", "eap",
                 "--metric", "kl_div", "--edges", "30", "--out", str(plain), "--no-progress",
                 "--no-track", "--no-render"]) == 0
    capsys.readouterr()
    assert main(["compare", str(out / "circuit.json"), str(plain / "circuit.json"),
                 "--models", str(gpt2_path), str(gpt2_path)]) == 0
    text = capsys.readouterr().out
    assert "split by position" in text and "normalized faithfulness" in text
    row_a = next(line for line in text.splitlines() if line.startswith("A "))
    value = float(row_a.split()[1])
    # printed to 3 places: half a unit of the last place + 16 eps (a few float32 roundings of
    # a normalized faithfulness ~1)
    assert abs(value - c.attrs["faithfulness"]) <= 5e-4 + 16 * EPS32
    rc = main(["discover", "--model", str(gpt2_path), "--task", str(task), "--method", "eap",
               "--positions", "IO", "--edges", "30", "--out", str(tmp_path / "bad"),
               "--no-progress", "--no-track"])
    assert rc != 0
    assert "unknown or repeated position" in capsys.readouterr().err


def test_evaluate_and_reopen_a_position_run(gpt2_path, tmp_path):
    """A position-aware run's scores re-evaluate on the same split; the evidence tools reopen
    it unsplit, with scores summed over positions."""
    from acdc_engine.api import discover, evaluate_scores
    from acdc_engine.api.evidence import open_run

    task = tmp_path / "pairs.jsonl"
    task.write_text("\n".join(json.dumps(r) for r in _rows(6)) + "\n")
    res = discover(str(gpt2_path), str(task), "eap", metric="kl_div", positions="named",
                   n_edges=25, out=tmp_path / "run", progress=False, track=False, render=False)
    g = res.circuit.graph
    assert set(g.positions) == {"A", "B", "END", "other"} and g.positions[-2:] == ("END", "other")
    ev = evaluate_scores(tmp_path / "run", out=tmp_path / "ev", progress=False, track=False,
                         render=False)
    assert ev.params["position_split"] == "named"
    assert ev.curve.full == res.faithfulness.full  # the full model's run again: bit for bit
    ctx = open_run(str(tmp_path / "run"))
    assert not ctx.circuit.graph.positions
    assert set(ctx.circuit.edge_names) == {n.split("@")[0] for n in res.circuit.edge_names}
    summed = res.scores.view(g.n_groups, -1).sum(0)
    ref = res.scores.view(g.n_groups, -1).double().sum(0)  # the same sums in float64
    # bound: 4x the float32 sum's error against float64 + 16 eps max|score| per group summed
    # (the sums over groups may run in another order: n_groups roundings)
    assert_close_to_f64(ctx.scores, summed, ref, res.scores, factor=4, ulps=16 * g.n_groups)
