"""The console's file verbs are confined; a run's circuit is shown as saved; the steps say what
is in force; the CLI's port and a tokenizer that cannot encode the task are one line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from acdc_engine.circuit import Circuit

SECRET_LINE = "topsecret:$6$do-not-leak:19000:0:99999:7:::"


@pytest.fixture
def results():
    root = Path(os.environ["ACDC_RESULTS"])  # tests/conftest.py isolates it per session
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture
def outside(tmp_path):
    """A readable file outside the results folder, shaped like /etc/shadow."""
    f = tmp_path / "shadow"
    f.write_text(SECRET_LINE + "\nsecond:line\n")
    return f


def _refused(out: dict, *leaks: str) -> str:
    assert out["ok"] is False, out
    msg = out["message"]
    for leak in (SECRET_LINE, "topsecret", "root:", *leaks):
        assert leak not in msg, msg
    assert "outside the folders the viewer may" in msg, msg
    return msg


def test_show_circuit_outside_the_results_is_refused_without_leaking(view_session, outside,
                                                                     results):
    s = view_session
    for ref in (str(outside), "/etc/shadow", "/etc/passwd", "../../../../etc/shadow",
                "../../../../etc/passwd", os.path.relpath(outside, results),
                os.path.relpath(outside, Path.cwd())):
        _refused(s.command(f"show circuit {ref}"))
    # a symlink inside the results folder that leads out is refused too
    link = results / "evil-link.json"
    link.unlink(missing_ok=True)
    link.symlink_to(outside)
    _refused(s.command("show circuit evil-link.json"))
    _refused(s.command(f"show circuit {link}"))
    run = results / "exp" / "linked-run"
    run.mkdir(parents=True, exist_ok=True)
    (run / "edge_scores.tsv").unlink(missing_ok=True)
    (run / "edge_scores.tsv").symlink_to(outside)  # a run whose scores file leads out
    out = s.command(f"show circuit {run}")
    assert out["ok"] is False and SECRET_LINE not in out["message"]
    assert "leads outside" in out["message"]
    assert s.circuit.current is None  # nothing was shown


def test_save_circuit_is_confined_to_the_results_folder(view_session, tmp_path, results):
    s = view_session
    s.ablate("a0.0")
    for ref in (str(tmp_path / "c.json"), "../escaped.json", "../../../../tmp/escaped.json"):
        _refused(s.command(f"save circuit {ref}"))
    assert not (tmp_path / "c.json").exists() and not (results.parent / "escaped.json").exists()
    bad = s.command("save circuit mlflow.db")  # never over the store or a run record
    assert not bad["ok"] and ".json" in bad["message"]
    assert not s.command("save circuit exp/run.json")["ok"]
    out = s.command("save circuit mine.json")  # relative: inside the results folder
    assert out["ok"] and (results / "mine.json").exists(), out
    assert Circuit.load(results / "mine.json").number_of_edges() < s.graph.n_edges
    s.allow(tmp_path)  # a folder given on the command line (or by code) is allowed
    assert s.command(f"save circuit {tmp_path / 'c.json'}")["ok"]


def test_run_given_on_the_command_line_can_be_shown_again(view_session, tmp_path, outside):
    s = view_session
    run = _fake_run(s, tmp_path / "elsewhere" / "run1")
    assert not s.command(f"show circuit {run}")["ok"]
    s.allow(run)  # what acdc view --run PATH does
    assert s.command(f"show circuit {run}")["ok"]
    assert s.command(f"show circuit {run / 'circuit.json'}")["ok"]
    _refused(s.command(f"show circuit {outside}"))  # its neighbours stay refused


def _fake_run(s, d: Path, n: int | None = None) -> Path:
    """A discovery run directory as acdc discover writes it: scores, the circuit it kept
    (top ``n`` by |score|, dead ends pruned) and run.json with that circuit's faithfulness."""
    from acdc_engine.records import write_scores

    g = s.graph
    scores = torch.linspace(-1, 1, g.n_edges)[torch.randperm(g.n_edges,
                                                             generator=torch.Generator()
                                                             .manual_seed(1))]
    if n is None:
        # a size where pruning removes edges, so the top-|kept| edges (pruned again) differ
        n = next(k for k in range(4, g.n_edges)
                 if Circuit.top(g, scores, Circuit.top(g, scores, k).number_of_edges())
                 .number_of_edges() != Circuit.top(g, scores, k).number_of_edges())
    circuit = Circuit.top(g, scores, n, method="eap", task=s.task)
    d.mkdir(parents=True, exist_ok=True)
    write_scores(d / "edge_scores.tsv", g, scores)
    circuit.save(d / "circuit.json")
    faith = s.circuit._faithfulness(circuit)
    p = s.problem
    (d / "run.json").write_text(json.dumps({
        "run_id": d.name, "kind": "discover",
        "params": {"task": s.task, "method": "eap", "metric": p.metric.name,
                   "ablation": p.ablation.kind, "n_examples": p.n_examples},
        "metrics": {"faithfulness": faith.normalized, "edges": circuit.number_of_edges()},
        "faithfulness": faith.as_dict(), "n_edges": circuit.number_of_edges()}))
    return d


def test_a_runs_circuit_is_shown_exactly_as_saved(view_session, results):
    """The viewer used to re-cut the top N edges (N = the saved count) and prune again: 33
    edges (0.594) for a run whose circuit.json has 36 (0.591)."""
    s = view_session
    run = _fake_run(s, results / "toy" / "run-as-saved")
    saved = Circuit.load(run / "circuit.json")
    record = json.loads((run / "run.json").read_text())
    g = s.graph
    scores = torch.tensor([float(x.split("\t")[1]) for x in
                           (run / "edge_scores.tsv").read_text().splitlines()[1:]])
    assert Circuit.top(g, scores, saved.number_of_edges()).number_of_edges() \
        != saved.number_of_edges()  # what the old code drew differs from the saved circuit
    for ref in (str(run), "run-as-saved", "toy/run-as-saved", str(run / "run.json")):
        out = s.command(f"show circuit {ref}")
        assert out["ok"], out
        info = s.circuit.info()
        assert set(s.circuit.current.edge_names) == set(saved.edge_names), ref
        assert info["n_edges"] == saved.number_of_edges() == record["n_edges"]
        assert abs(info["faithfulness"]["normalized"]
                   - record["faithfulness"]["normalized"]) < 1e-6
        assert info["has_scores"] and info["note"] is None
        assert f"{saved.number_of_edges()} edges" in out["message"]
        assert f"{record['faithfulness']['normalized']:.3f}" in out["message"]
    # the slider still cuts by score
    assert s.circuit.size(5)["n_edges"] <= 5


def test_a_run_of_other_settings_says_so(view_session, results):
    s = view_session
    run = _fake_run(s, results / "toy" / "run-mean")
    rec = json.loads((run / "run.json").read_text())
    rec["params"]["ablation"] = "mean"
    rec["faithfulness"]["normalized"] += 0.25
    (run / "run.json").write_text(json.dumps(rec))
    out = s.command(f"show circuit {run}")
    assert out["ok"]
    assert "the run recorded faithfulness" in out["message"] and "ablation mean" in out["message"]
    assert "ablation mean (here corrupted)" in s.circuit.info()["note"]


def test_restore_of_one_head_of_a_pattern_lists_what_is_in_force(view_session):
    s = view_session
    s.intervene("ablate a1.*")
    assert s.steps == ["ablate a1.*"]
    s.restore("a1.0")
    assert s.interventions == ["ablate a1.1 zero"]
    assert s.steps == ["ablate a1.1 zero"] == s.state()["steps"]
    assert "a1.*" not in s._repr_html_()
    s.intervene("patch a0.* from corrupted")
    s.freeze("a0.1")  # replaces what the pattern did to a0.1
    assert s.steps == ["ablate a1.1 zero",
                       "patch a0.0 corrupted (of 'patch a0.* from corrupted': a0.1 replaced by "
                       "a later step)", "freeze a0.1"]
    s.undo()
    assert s.steps == ["ablate a1.1 zero", "patch a0.* from corrupted"]
    s.ablate("a0.0->m1", "zero")
    s.ablate("a0.0->logits", "mean")  # one writer reads one source: a0.0->m1 is now mean
    assert "a0.0->m1 now read the source a later step set" in s.steps[2]


def test_port_out_of_range_is_an_argparse_error(capsys):
    from acdc_engine.cli import main

    for bad in ("70000", "65536", "-1"):
        with pytest.raises(SystemExit) as e:
            main(["view", "--port", bad, "--no-browser"])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and "OverflowError" not in err
        assert err.strip().splitlines()[-1].startswith("acdc view: error: argument --port:")


def test_compare_with_a_model_whose_tokenizer_cannot_encode_the_task(capsys, monkeypatch):
    """tiny-ioi on ioi beside tracr-reverse (a word-level tokenizer without [UNK])."""
    from acdc_engine.cli import main

    monkeypatch.setenv("ACDC_PROGRESS", "0")
    assert main(["view", "--compare", "tracr-reverse", "--port", "0", "--no-browser",
                 "--threads", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    lines = [x for x in err.splitlines() if x.startswith("error:")]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: --compare tracr-reverse: ")
    assert "'ioi'" in lines[0] and "tokeniz" in lines[0]


def test_a_run_json_that_is_not_json_is_one_line(view_session, results, capsys):
    s = view_session
    run = _fake_run(s, results / "toy" / "run-broken")
    (run / "run.json").write_text("{not json at all\nsecret-second-line\n")
    out = s.command(f"show circuit {run}")
    assert out["ok"] is False and "\n" not in out["message"]
    assert "cannot read" in out["message"] and "run.json" in out["message"]
    assert "secret-second-line" not in out["message"] and "not json at all" not in out["message"]
    (run / "run.json").write_text("[1, 2]")
    assert "is not a run record" in s.command(f"show circuit {run}")["message"]
