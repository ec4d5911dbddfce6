"""optuna sweeps: Pareto front on disk, resumable studies, failed trials, nested MLflow runs,
plugin methods searched over the space their settings declare."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from acdc_engine import plugins
from acdc_engine.api.search import SweepConfig, sweep
from acdc_engine.hookspecs import hookimpl
from acdc_engine.scoring import Method, MethodOutput, attribute, setting
from acdc_engine.tasks import Task
from acdc_engine.testing import random_pairs


@pytest.fixture(scope="module")
def task(gpt2_path):
    return Task("rand", lambda n, s: random_pairs(n or 8, seed=s), model=str(gpt2_path))


_calls = []


def _flaky(problem, settings, progress):
    """EAP, except that its first call fails."""
    _calls.append(1)
    if len(_calls) == 1:
        raise RuntimeError("this method fails on its first call")
    return MethodOutput(attribute(problem, "eap", progress=False))


class _Flaky:
    @hookimpl
    def acdc_methods(self):
        return [Method("flaky", _flaky)]


def test_sweep_writes_the_pareto_front_and_resumes(task, tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    kw = dict(storage=storage, study_name="s1", track=False, results=tmp_path,
              methods=("eap", "acdc"), ablations=("corrupted", "zero"), n_examples=8)
    first = sweep(task, n_trials=3, **kw)
    assert first.ran == 3 and len(first.trials) == 3
    data = json.loads((tmp_path / "sweeps" / "s1" / "pareto.json").read_text())
    assert data["pareto"] and data["pareto"] == json.loads(json.dumps(first.pareto))
    for row in first.pareto:
        assert row["method"] in {"eap", "acdc"} and row["edges"] >= 0
        assert (tmp_path / "sweeps" / "s1" / f"trial-{row['trial']}" / "circuit.json").exists()
    edges = [r["edges"] for r in first.pareto]
    faith = [r["faithfulness"] for r in first.pareto]
    assert edges == sorted(edges) and faith == sorted(faith)  # a front: more edges, more faith
    out = capsys.readouterr().out
    assert "trial 0:" in out and "faithful" in first.table()

    again = sweep(task, n_trials=4, **kw)  # same name + storage: continues, one more trial
    assert again.ran == 1 and len(again.trials) == 4
    assert "resumed" in again.summary()
    done = sweep(task, n_trials=4, **kw)
    assert done.ran == 0 and "nothing to run" in done.summary()


def test_a_failing_trial_is_recorded_and_the_study_goes_on(task, tmp_path):
    plugins.register(_Flaky(), name="flaky-method")
    try:
        res = sweep(task, n_trials=3, storage="memory", track=False, results=tmp_path,
                    methods=("flaky",), ablations=("corrupted",), n_examples=8, verbose=False)
    finally:
        plugins.unregister("flaky-method")
    assert [t["state"] for t in res.trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert "fails on its first call" in res.trials[0]["error"]
    assert res.pareto and all(r["trial"] > 0 for r in res.pareto)


def test_sweep_logs_nested_mlflow_runs_and_the_cli_works(task, tmp_path, monkeypatch):
    from mlflow import MlflowClient

    from acdc_engine.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("ACDC_RESULTS", str(tmp_path))
    code = main(["sweep", "--task", str(_task_file(tmp_path)), "--model",
                 task.model, "--n-trials", "2", "--storage", "memory", "--study-name", "cli",
                 "--methods", "eap,acdc", "--ablations", "corrupted", "--tracking-uri", uri,
                 "--experiment", "sweeps"])
    assert code == 0
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("sweeps")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("acdc.kind") == "sweep"]
    assert len(parents) == 1
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId")
                == parents[0].info.run_id]
    assert len(children) == 2
    assert {r.data.tags["optuna.trial"] for r in children} == {"0", "1"}
    assert all(r.info.status == "FINISHED" for r in runs)
    assert "pareto_size" in parents[0].data.metrics
    assert (tmp_path / "sweeps" / "cli" / "pareto.json").exists()


def _task_file(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in random_pairs(8, seed=5)))
    return path


# ----- a plugin method takes part with its own settings and search space ----------------------


@dataclass(frozen=True)
class _NoisySettings:
    noise: float = setting(0.5, "scale of the noise added to EAP", search=(0.2, 0.3))
    kind: str = setting("normal", "noise distribution", search=["normal", "uniform"])
    seed: int = setting(7, "not searched: sweeps keep the default")


@dataclass(frozen=True)
class _PickySettings:
    tau: float = setting(0.5, "a threshold the sweep's tau range replaces", search=(0.1, 0.9),
                         log=True)


_seen: list = []


def _noisy(problem, settings, progress):
    """EAP plus a little noise; remembers the settings object it was given."""
    import torch

    _seen.append(settings)
    scores = attribute(problem, "eap", progress=False)
    g = torch.Generator().manual_seed(settings.seed)
    noise = torch.randn(scores.shape, generator=g) if settings.kind == "normal" else \
        torch.rand(scores.shape, generator=g)
    return MethodOutput(scores + settings.noise * 1e-3 * noise)


def _picky(problem, settings, progress):
    """Selects its own circuit: the edges whose |EAP score| reaches tau * the largest."""
    _seen.append(settings)
    scores = attribute(problem, "eap", progress=False)
    return MethodOutput(scores, keep=scores.abs() >= settings.tau * scores.abs().max())


class _Searchable:
    @hookimpl
    def acdc_methods(self):
        return [Method("noisy", _noisy, settings=_NoisySettings),
                Method("picky", _picky, settings=_PickySettings, selects_circuit=True)]


def test_a_plugin_method_is_swept_over_its_declared_settings(task, tmp_path):
    _seen.clear()
    plugins.register(_Searchable(), name="searchable-methods")
    try:
        config = SweepConfig(storage="memory", track=False, results=tmp_path,
                             ablations=("corrupted",), n_examples=8, verbose=False)
        res = sweep(task, n_trials=6, config=config, methods=("noisy", "picky"),
                    tau_range=(0.01, 0.02))
    finally:
        plugins.unregister("searchable-methods")
    assert [t["state"] for t in res.trials] == ["COMPLETE"] * 6
    rows = {"noisy": [], "picky": []}
    for t in res.trials:
        rows[t["method"]].append(t)
    assert rows["noisy"] and rows["picky"], "both methods should be tried in 6 trials"
    for t in rows["noisy"]:  # its searchable settings, and an edge budget: it does not select
        assert set(t["settings"]) == {"noise", "kind", "n_edges"}
        assert 0.2 <= t["settings"]["noise"] <= 0.3
        assert t["settings"]["kind"] in ("normal", "uniform")
    for t in rows["picky"]:  # selects its circuit: no budget; tau from the sweep's tau range
        assert set(t["settings"]) == {"tau"}
        assert 0.01 <= t["settings"]["tau"] <= 0.02
    # what the method received is what the trial suggested, as its own settings dataclass
    noisy = [s for s in _seen if isinstance(s, _NoisySettings)]
    picky = [s for s in _seen if isinstance(s, _PickySettings)]
    assert [(s.noise, s.kind) for s in noisy] == [(t["settings"]["noise"], t["settings"]["kind"])
                                                  for t in rows["noisy"]]
    assert all(s.seed == 7 for s in noisy)
    assert [s.tau for s in picky] == [t["settings"]["tau"] for t in rows["picky"]]


def test_sweep_options_are_checked(task):
    with pytest.raises(TypeError, match="unknown sweep option"):
        sweep(task, n_trials=1, no_such_option=1)
