"""``acdc evaluate --scores`` on saved runs and ``acdc runs`` listings, through the CLI."""

from __future__ import annotations

import json

import pytest
from acdc_engine.testing import random_pairs

from acdc_engine import plugins
from acdc_engine.cli import main
from acdc_engine.hookspecs import hookimpl
from acdc_engine.tasks import Task

mlflow = pytest.importorskip("mlflow")


class ToyTasks:
    def __init__(self, model_path):
        self.model_path = str(model_path)

    @hookimpl
    def acdc_tasks(self):
        rows = lambda n, seed: random_pairs(n or 12, seed=seed)  # noqa: E731
        return [Task("toy", rows, model=self.model_path, default_n=12)]


@pytest.fixture(scope="module")
def runs(gpt2_path, tmp_path_factory):
    """Two tracked discover runs made with the CLI (eap, then eap-ig) in a tmp store."""
    d = tmp_path_factory.mktemp("runs")
    name = plugins.register(ToyTasks(gpt2_path), name="toy-tasks-cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ACDC_RESULTS", str(d / "results"))
        mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{d}/mlflow.db")
        ids = []
        for method in ("eap", "eap-ig"):
            assert main(["discover", "--task", "toy", "--method", method, "--no-progress"]) == 0
            (run_dir,) = [p for p in (d / "results" / "toy").iterdir() if p.name not in ids]
            ids.append(run_dir.name)
        yield {"dir": d, "results": d / "results", "uri": f"sqlite:///{d}/mlflow.db",
               "ids": ids, "mp": mp}
    plugins.unregister(name)


def _record(runs, run_id):
    return json.loads((runs["results"] / "toy" / run_id / "run.json").read_text())


def test_evaluate_scores_of_a_saved_run(runs, capsys):
    capsys.readouterr()
    eap = runs["ids"][0]
    source = _record(runs, eap)
    assert main(["evaluate", "--scores", eap, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "CPR" in out and "CMD" in out and "budget %" in out
    # the same scores, model and data give the same curve as the discover run logged
    client = mlflow.MlflowClient(runs["uri"])
    exp = client.get_experiment_by_name("toy")
    (ev,) = client.search_runs([exp.experiment_id], "tags.`acdc.kind` = 'evaluate'")
    assert ev.info.status == "FINISHED" and ev.data.tags["acdc.source_run"] == eap
    assert ev.data.metrics["cpr"] == pytest.approx(source["metrics"]["cpr"], abs=1e-6)
    assert ev.data.metrics["cmd"] == pytest.approx(source["metrics"]["cmd"], abs=1e-6)
    assert ev.data.params["data_hash"] == source["params"]["data_hash"]
    assert {"curve.tsv", "run.json", "edge_scores.tsv"} <= {
        a.path for a in client.list_artifacts(ev.info.run_id)}


def test_evaluate_scores_from_a_file_and_from_mlflow_only(runs, tmp_path, capsys, gpt2_path):
    eap = runs["ids"][0]
    cpr = _record(runs, eap)["metrics"]["cpr"]
    tsv = runs["results"] / "toy" / eap / "edge_scores.tsv"
    capsys.readouterr()
    # a bare scores file (copied away from its run.json): model and task from the flags
    lone = tmp_path / "scores.tsv"
    lone.write_text(tsv.read_text())
    assert main(["evaluate", "--scores", str(lone), "--model", str(gpt2_path), "--task", "toy",
                 "--no-track", "--out", str(tmp_path / "ev"), "--no-progress"]) == 0
    rec = json.loads((tmp_path / "ev" / "run.json").read_text())
    assert rec["metrics"]["cpr"] == pytest.approx(cpr, abs=1e-6)
    assert f"CPR {cpr:.3f}" in capsys.readouterr().out
    # a run id whose local directory is not there: scores and run.json come from MLflow
    runs["mp"].setenv("ACDC_RESULTS", str(tmp_path / "empty"))
    try:
        assert main(["evaluate", "--scores", eap, "--no-track", "--no-progress"]) == 0
    finally:
        runs["mp"].setenv("ACDC_RESULTS", str(runs["results"]))
    out = capsys.readouterr().out
    assert f"MLflow run {eap}" in out and f"CPR {cpr:.3f}" in out
    # something that is not a run
    assert main(["evaluate", "--scores", "no-such-run", "--no-progress"]) == 2
    assert "no run 'no-such-run'" in capsys.readouterr().err


def test_evaluate_with_a_ground_truth_logs_roc_auc(runs, tmp_path, capsys):
    """--ground-truth: edge and node ROC AUC of the saved scores, printed and logged to MLflow.
    The ground truth here is the run's own 5 best-scored edges, so the edge AUC must be 1."""
    eap = runs["ids"][0]
    rows = [line.split("\t") for line in
            (runs["results"] / "toy" / eap / "edge_scores.tsv").read_text().splitlines()[1:]]
    top = sorted(rows, key=lambda r: -abs(float(r[1])))[:5]
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"edges": [r[0] for r in top]}))
    capsys.readouterr()
    assert main(["evaluate", "--scores", eap, "--ground-truth", str(gt), "--no-progress"]) == 0
    assert "edge ROC AUC 1.000" in capsys.readouterr().out
    client = mlflow.MlflowClient(runs["uri"])
    exp = client.get_experiment_by_name("toy")
    (ev,) = client.search_runs([exp.experiment_id], "params.ground_truth != ''")
    assert ev.data.metrics["edge_roc_auc"] == 1.0
    assert 0.5 < ev.data.metrics["node_roc_auc"] <= 1.0
    # a ground truth naming an edge this model does not have: an error that names it
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"edges": ["a9.9->logits"]}))
    assert main(["evaluate", "--scores", eap, "--ground-truth", str(bad), "--no-track",
                 "--no-progress"]) == 2
    assert "a9.9->logits" in capsys.readouterr().err


def test_runs_lists_recent_runs(runs, capsys):
    eap, eap_ig = runs["ids"]
    capsys.readouterr()
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "from MLflow store" in lines[0]
    assert lines[1].split()[:4] == ["started", "experiment", "run", "id"]
    assert "CPR" in lines[1] and "faith" in lines[1]
    rows = {ln.split()[3]: ln for ln in lines[3:]}
    assert eap in rows and eap_ig in rows
    assert "FINISHED" in rows[eap] and "eap" in rows[eap].split() and "discover" in rows[eap]
    assert out.index(eap_ig) < out.index(eap)  # newest first

    assert main(["runs", "--limit", "1", "--experiment", "toy"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert main(["runs", "--experiment", "nothing-here"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3  # title and header only

    assert main(["runs", "--no-track"]) == 0  # from results/*/*/run.json
    out = capsys.readouterr().out
    assert "run.json files under" in out and eap in out and eap_ig in out
