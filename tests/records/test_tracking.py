"""Runs are records: discover/evaluate runs logged to MLflow and read back through MlflowClient.

Every test uses a tracking store under a tmp dir, never the repository's results/.
"""

from __future__ import annotations

import json
import re
import threading

import pytest
import torch
from acdc_engine.testing import random_pairs

from acdc_engine import discover, plugins
from acdc_engine.cli import main
from acdc_engine.errors import MetricError
from acdc_engine.hookspecs import hookimpl
from acdc_engine.metrics import Metric
from acdc_engine.tasks import Task
from acdc_engine.records import RunHandle, TrackingError, resolve_uri, run_context

mlflow = pytest.importorskip("mlflow")
MlflowClient = mlflow.MlflowClient


class ToyTasks:
    """A task on the conftest's tiny random GPT-2 (registered in-process)."""

    def __init__(self, model_path):
        self.model_path = str(model_path)

    @hookimpl
    def acdc_tasks(self):
        rows = lambda n, seed: random_pairs(n or 12, seed=seed)  # noqa: E731
        return [Task("toy", rows, model=self.model_path, default_n=12)]


def _nan_when_evaluating(logits, batch):
    """Logit difference while scoring (gradients on); NaN in the evaluation passes."""
    pick = lambda idx: logits.gather(-1, idx[:, None])[:, 0]  # noqa: E731
    v = pick(batch.answer) - pick(batch.wrong)
    return v if torch.is_grad_enabled() else torch.full_like(v, float("nan"))


class NanMetric:
    @hookimpl
    def acdc_metrics(self):
        return [Metric("nan_eval", _nan_when_evaluating, needs=("wrong",))]


@pytest.fixture(scope="module")
def toy(gpt2_path):
    name = plugins.register(ToyTasks(gpt2_path), name="toy-tasks")
    yield "toy"
    plugins.unregister(name)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("tracking")
    return {"uri": f"sqlite:///{d}/mlflow.db", "results": d / "results"}


# ----- the tracking API ------------------------------------------------------------------


def test_resolve_uri(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("ACDC_RESULTS", "res")
    assert resolve_uri() == f"sqlite:///{tmp_path}/res/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert resolve_uri() == "http://tracking.example:5000"
    assert resolve_uri("sqlite:///rel/m.db") == f"sqlite:///{tmp_path}/rel/m.db"  # explicit wins
    assert resolve_uri("sqlite:////abs/m.db") == "sqlite:////abs/m.db"


def test_run_context_statuses_nesting_and_disabled(store):
    uri = store["uri"]
    client = MlflowClient(uri)
    with run_context("ctx", "outer", uri=uri, tags={"acdc.kind": "test"}) as outer:
        outer.log_params({"a": 1, "skip": None, "d": {"k": [1, 2]}})
        outer.log_metrics({"m": 0.5})
        with run_context(None, "child", nested=True) as child:  # parent's store and experiment
            child.log_metrics({"m": 1.0}, step=3)
        # a worker thread starts with an empty context: its nested run still finds the parent
        ids = []
        worker = threading.Thread(target=_nested_in_thread, args=(ids,))
        worker.start()
        worker.join()
    with pytest.raises(KeyboardInterrupt), run_context("ctx", "killed", uri=uri) as killed:
        raise KeyboardInterrupt
    with pytest.raises(ValueError), run_context("ctx", "failed", uri=uri) as failed:
        raise ValueError("boom")
    with run_context("ctx", enabled=False) as off:
        off.log_params({"a": 1})
        off.log_metrics({"m": 1})
        assert off.run_id is None and not off.enabled

    r = client.get_run(outer.run_id)
    assert r.info.status == "FINISHED" and r.data.params == {"a": "1", "d": '{"k": [1, 2]}'}
    assert r.data.tags["acdc.kind"] == "test"
    c = client.get_run(child.run_id)
    assert c.data.tags["mlflow.parentRunId"] == outer.run_id
    assert c.info.experiment_id == r.info.experiment_id and c.info.status == "FINISHED"
    assert client.get_run(ids[0]).data.tags["mlflow.parentRunId"] == outer.run_id
    assert client.get_run(killed.run_id).info.status == "KILLED"
    assert client.get_run(failed.run_id).info.status == "FAILED"
    # SQLite stores keep artifacts next to the database, not in ./mlruns
    assert r.info.artifact_uri.startswith(f"file://{uri[len('sqlite:///'):].rsplit('/', 1)[0]}")


def _nested_in_thread(ids):
    with run_context(None, "thread child", nested=True) as run:
        ids.append(run.run_id)


# ----- discover runs ---------------------------------------------------------------------


def test_discover_run_is_recorded(toy, store, gpt2_path):
    r = discover(task=toy, method="eap", n_edges=10, tracking_uri=store["uri"],
                 results=store["results"], progress=False)
    client = MlflowClient(store["uri"])
    run = client.get_run(r.run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "toy"  # experiment per task
    p = run.data.params
    assert p["model"] == str(gpt2_path) and p["weights_hash"] == r.params["weights_hash"]
    assert p["task"] == "toy" and len(p["data_hash"]) == 16
    assert (p["method"], p["metric"], p["ablation"], p["seed"]) == (
        "eap", "logit_diff", "corrupted", "0")
    assert p["n_edges_requested"] == "10" and "version.torch" in p and "version.mlflow" in p
    m = run.data.metrics
    assert m["faithfulness"] == pytest.approx(r.faithfulness.normalized)
    assert m["faithfulness_raw"] == pytest.approx(r.faithfulness.circuit)
    assert m["cpr"] == pytest.approx(r.curve.cpr) and m["cmd"] == pytest.approx(r.curve.cmd)
    assert m["edges"] == r.circuit.number_of_edges() <= 10
    assert m["nodes"] == r.circuit.number_of_nodes()
    assert m["wall_time_s"] > 0 and m["peak_memory_mb"] > 0
    steps = [h.step for h in client.get_metric_history(r.run_id, "curve_faithfulness")]
    assert sorted(steps) == [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]  # per mille of edges
    artifacts = {a.path for a in client.list_artifacts(r.run_id)}
    assert {"circuit.json", "edge_scores.tsv", "curve.tsv", "run.json"} <= artifacts

    # results/<experiment>/<run-id>/ holds the same files, and run.json can reproduce the run
    assert r.out_dir == store["results"] / "toy" / r.run_id
    rec = json.loads((r.out_dir / "run.json").read_text())
    assert rec["status"] == "FINISHED" and rec["run_id"] == r.run_id
    assert rec["params"]["weights_hash"] == p["weights_hash"] and rec["versions"]["mlflow"]
    assert rec["command"].startswith(f"acdc discover --model {gpt2_path} --task toy --method eap")
    assert "--edges 10" in rec["command"]
    assert r.circuit.attrs["run_id"] == r.run_id


def test_default_discover_evaluates_the_budget_grid_once(toy, monkeypatch):
    from acdc_engine.problem import Problem

    calls = []
    original = Problem.evaluate
    monkeypatch.setattr(Problem, "evaluate",
                        lambda self, masks, *a, **k: calls.append(len(masks)) or original(
                            self, masks, *a, **k))
    r = discover(task=toy, method="eap", track=False, progress=False)
    assert len(calls) == 1  # the target search and the curve share one pass
    f = r.curve.normalized
    i = next(i for i, v in enumerate(f) if v >= 0.8)
    assert r.faithfulness.normalized == pytest.approx(f[i])
    assert r.circuit.number_of_edges() == r.curve.n_edges[i]


def test_failed_run_is_marked_failed_with_partial_outputs(toy, store):
    name = plugins.register(NanMetric(), name="nan-metric")
    try:
        with pytest.raises(MetricError, match="nan_eval"):
            discover(task=toy, method="eap", metric="nan_eval", tracking_uri=store["uri"],
                     results=store["results"], progress=False)
    finally:
        plugins.unregister(name)
    client = MlflowClient(store["uri"])
    exp = client.get_experiment_by_name("toy")
    (run,) = client.search_runs([exp.experiment_id], "params.metric = 'nan_eval'")
    assert run.info.status == "FAILED"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"edge_scores.tsv", "run.json"} <= artifacts  # the scores computed before the failure
    assert "circuit.json" not in artifacts
    local = store["results"] / "toy" / run.info.run_id
    rec = json.loads((local / "run.json").read_text())
    assert rec["status"] == "FAILED" and rec["error"].startswith("MetricError")
    assert len((local / "edge_scores.tsv").read_text().splitlines()) == 1 + 46


def test_store_failing_mid_run_keeps_the_results(toy, store, monkeypatch, capsys):
    def broken(self, *a, **k):
        raise TrackingError(self.uri, "log artifacts", OSError("disk full"))

    monkeypatch.setattr(RunHandle, "log_artifacts", broken)
    r = discover(task=toy, method="eap", n_edges=5, tracking_uri=store["uri"], progress=False)
    assert r.tracking_error and "disk full" in r.tracking_error and store["uri"] in r.tracking_error
    kept = re.search(r"kept in (\S+)", r.tracking_error).group(1)
    rec = json.loads((__import__("pathlib").Path(kept) / "run.json").read_text())
    assert rec["status"] == "FINISHED" and "disk full" in rec["tracking_error"]
    assert "error: MLflow tracking store" in capsys.readouterr().err


# ----- the CLI switches ------------------------------------------------------------------


def test_no_track_writes_no_mlflow_run(toy, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ACDC_RESULTS", str(tmp_path / "results"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/env.db")
    assert main(["discover", "--task", toy, "--method", "eap", "--edges", "5", "--no-track",
                 "--no-progress"]) == 0
    assert not (tmp_path / "env.db").exists() and not (tmp_path / "results" / "mlflow.db").exists()
    assert not (tmp_path / "mlruns").exists()
    (run_json,) = (tmp_path / "results" / "toy").glob("*/run.json")
    rec = json.loads(run_json.read_text())
    assert rec["tracking_uri"] is None and rec["run_id"] == run_json.parent.name
    assert re.match(r"\d{8}-\d{6}-eap-[0-9a-f]{4}$", rec["run_id"])  # a timestamp id
    assert "MLflow run" not in capsys.readouterr().out
    # the pictures are drawn unless --no-render
    assert (run_json.parent / "circuit.svg").exists()
    assert main(["discover", "--task", toy, "--method", "eap", "--edges", "5", "--no-track",
                 "--no-progress", "--no-render", "--out", str(tmp_path / "plain")]) == 0
    assert (tmp_path / "plain" / "circuit.json").exists()
    assert not any((tmp_path / "plain" / f"circuit.{x}").exists() for x in ("svg", "png", "html"))


def test_broken_tracking_uri_is_a_clear_error(toy, tmp_path, capsys):
    bad = tmp_path / "not-a-database.db"
    bad.write_text("this is not sqlite")
    uri = f"sqlite:///{bad}"
    with pytest.raises(TrackingError, match="open the store") as e:
        discover(task=toy, method="eap", tracking_uri=uri, progress=False)
    assert uri in str(e.value) and "--no-track" in str(e.value)
    assert main(["discover", "--task", toy, "--method", "eap", "--tracking-uri", uri,
                 "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: MLflow tracking store '{uri}' failed to open the store")
    assert "Traceback" not in err


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


class InterruptMethod:
    @hookimpl
    def acdc_methods(self):
        from acdc_engine.scoring import Method

        return [Method("interrupt", _interrupt)]


def test_interrupted_run_is_marked_killed(toy, store):
    name = plugins.register(InterruptMethod(), name="interrupt-method")
    try:
        with pytest.raises(KeyboardInterrupt):
            discover(task=toy, method="interrupt", tracking_uri=store["uri"],
                     results=store["results"], progress=False)
    finally:
        plugins.unregister(name)
    client = MlflowClient(store["uri"])
    exp = client.get_experiment_by_name("toy")
    (run,) = client.search_runs([exp.experiment_id], "params.method = 'interrupt'")
    assert run.info.status == "KILLED"
    assert run.data.params["weights_hash"]  # params logged before the interruption are kept
    rec = json.loads((store["results"] / "toy" / run.info.run_id / "run.json").read_text())
    assert rec["status"] == "KILLED" and "run.json" in {
        a.path for a in client.list_artifacts(run.info.run_id)}
