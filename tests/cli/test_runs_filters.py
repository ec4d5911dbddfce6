"""``acdc runs --task/--method/--model`` and ``--json``: from run.json files (no MLflow store)
and from a local MLflow store, with runs written directly (no discovery needed)."""

from __future__ import annotations

import json

import pytest

from acdc_engine.cli import main

RUNS = [  # (experiment, run id, task, method, model, faithfulness)
    ("ioi", "a" * 32, "ioi", "eap", "tiny-ioi", 0.9),
    ("ioi", "b" * 32, "ioi", "eap-ig", "tiny-ioi", 0.85),
    ("pairs", "c" * 32, "/data/pairs.jsonl", "eap", "/models/gpt2-ioi-bpe", float("nan")),
]


@pytest.fixture
def results(tmp_path, monkeypatch):
    root = tmp_path / "results"
    for i, (exp, rid, task, method, model, faith) in enumerate(RUNS):
        d = root / exp / rid
        d.mkdir(parents=True)
        (d / "run.json").write_text(json.dumps({
            "run_id": rid, "experiment": exp, "kind": "discover", "status": "FINISHED",
            "created": f"2026-01-0{i + 1}T10:00:00+00:00",
            "params": {"task": task, "method": method, "model": model},
            "metrics": {"faithfulness": faith, "edges": 10 + i}}))
    monkeypatch.setenv("ACDC_RESULTS", str(root))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/none.db")
    return root


def _ids(capsys, argv) -> list[str]:
    assert main(["runs", *argv, "--json"]) == 0
    return [r["run_id"] for r in json.loads(capsys.readouterr().out)["runs"]]


def test_filters_and_json_from_run_files(results, capsys):
    a, b, c = (r[1] for r in RUNS)
    assert _ids(capsys, []) == [c, b, a]  # newest first; no store: the run.json files
    assert _ids(capsys, ["--method", "eap"]) == [c, a]
    assert _ids(capsys, ["--model", "tiny-ioi", "--method", "eap-ig"]) == [b]
    assert _ids(capsys, ["--model", "gpt2-ioi-bpe"]) == [c]  # a path's last part
    assert _ids(capsys, ["--task", "pairs"]) == [c]  # a pairs file's stem (and experiment)
    assert _ids(capsys, ["--task", "pairs.jsonl"]) == [c]
    assert _ids(capsys, ["--task", "ioi", "--limit", "1"]) == [b]
    assert _ids(capsys, ["--method", "acdc"]) == []
    assert main(["runs", "--no-track", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["source"].startswith("run.json files under")
    row = data["runs"][0]
    assert row["faithfulness"] is None and row["edges"] == 12  # nan -> null
    assert {"started", "experiment", "run_id", "kind", "status", "method", "model", "task",
            "cpr", "cmd", "time_s"} <= set(row)
    # the table says what it filtered on
    assert main(["runs", "--method", "eap"]) == 0
    out = capsys.readouterr().out
    assert "2 most recent run(s)" in out and "method 'eap'" in out


def test_filters_from_an_mlflow_store(results, tmp_path, capsys, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = mlflow.MlflowClient(uri)
    ids = {}
    for i, (exp, _, task, method, model, faith) in enumerate(RUNS):
        e = client.get_experiment_by_name(exp)
        eid = e.experiment_id if e else client.create_experiment(exp)
        run = client.create_run(eid, start_time=1_700_000_000_000 + i * 1000,
                                tags={"acdc.kind": "discover"})
        for k, v in {"task": task, "method": method, "model": model}.items():
            client.log_param(run.info.run_id, k, v)
        client.log_metric(run.info.run_id, "faithfulness", faith)
        client.set_terminated(run.info.run_id)
        ids[method, model] = run.info.run_id
    a, b, c = ids["eap", "tiny-ioi"], ids["eap-ig", "tiny-ioi"], ids["eap", "/models/gpt2-ioi-bpe"]
    assert _ids(capsys, []) == [c, b, a]
    assert _ids(capsys, ["--method", "eap"]) == [c, a]
    assert _ids(capsys, ["--task", "pairs", "--model", "gpt2-ioi-bpe"]) == [c]
    assert _ids(capsys, ["--task", "ioi", "--method", "eap", "--limit", "5"]) == [a]
    assert main(["runs", "--json", "--task", "ioi"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["source"] == f"MLflow store {uri}"
    assert [r["faithfulness"] for r in data["runs"]] == [0.85, 0.9]
