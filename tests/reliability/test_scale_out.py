"""Many workers, one study: 3 ``acdc sweep`` processes share an optuna study in PostgreSQL and
an ``mlflow server`` backed by PostgreSQL; one is SIGKILLed mid-trial. Its trial is marked
failed by the heartbeats and redone, the study gets exactly the trials asked for, and every
complete trial has exactly one FINISHED MLflow run. Run with ``tox -e scale``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

pytestmark = [pytest.mark.scale, pytest.mark.slow]

N_TRIALS, N_WORKERS = 8, 3


def _worker(storage, tracking, results):
    env = {**os.environ, "ACDC_RESULTS": str(results), "ACDC_PROGRESS": "0",
           "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "acdc_engine.cli", "sweep", "--n-trials", str(N_TRIALS),
         "--storage", storage, "--study-name", "scale", "--tracking-uri", tracking,
         "--methods", "eap", "--ablations", "corrupted,zero", "--examples", "8",
         "--heartbeat", "1", "--grace", "5", "--threads", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def test_three_workers_one_study_one_killed(new_database, mlflow_server, tmp_path):
    import optuna
    from mlflow import MlflowClient

    storage = new_database("optuna")
    workers = [_worker(storage, mlflow_server, tmp_path / f"worker-{i}")
               for i in range(N_WORKERS)]
    victim = workers[0]
    killed_trial = None
    deadline = time.time() + 900
    while killed_trial is None and time.time() < deadline and victim.poll() is None:
        try:
            trials = optuna.load_study(study_name="scale", storage=storage).get_trials()
        except Exception:  # the study does not exist yet
            trials = []
        for t in trials:
            if t.state.name == "RUNNING" and \
                    str(t.user_attrs.get("worker", "")).endswith(f":{victim.pid}"):
                victim.send_signal(signal.SIGKILL)  # mid-trial, no clean-up at all
                killed_trial = t.number
                break
        time.sleep(0.1)
    assert killed_trial is not None, "the victim never ran a trial"
    victim.wait(timeout=60)
    outputs = [w.communicate(timeout=900)[0] for w in workers[1:]]
    for w, out in zip(workers[1:], outputs):
        assert w.returncode == 0, out[-3000:]

    trials = optuna.load_study(study_name="scale", storage=storage).get_trials()
    states = {t.number: t.state.name for t in trials}
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert states[killed_trial] == "FAIL"  # failed by a survivor's heartbeat check
    retries = [t for t in trials if killed_trial in t.system_attrs.get("retry_history", [])]
    assert len(retries) == 1 and retries[0].state.name == "COMPLETE"  # and redone
    killed = next(t for t in trials if t.number == killed_trial)
    assert killed.params.items() <= retries[0].params.items()  # what it had chosen, kept
    assert len(complete) == N_TRIALS  # exactly as many as asked: nothing lost or doubled
    assert {s for s in states.values()} <= {"COMPLETE", "FAIL", "PRUNED"}
    workers_used = {t.user_attrs["worker"] for t in trials if "worker" in t.user_attrs}

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("sweep-ioi")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    trial_runs = [r for r in runs if r.data.tags.get("acdc.kind") == "discover"]
    finished = {r.info.run_id: r for r in trial_runs if r.info.status == "FINISHED"}
    # every complete trial has exactly one FINISHED run, and every FINISHED run one trial
    assert sorted(finished) == sorted(t.user_attrs["run_id"] for t in complete)
    for t in complete:
        tags = finished[t.user_attrs["run_id"]].data.tags
        assert tags["optuna.trial"] == str(t.number) and tags["optuna.study"] == "scale"
    sweeps = [r for r in runs if r.data.tags.get("acdc.kind") == "sweep"]
    print(f"\nscale-out: {N_WORKERS} workers ({len(workers_used)} ran trials), "
          f"{len(trials)} trials ({len(complete)} complete, "
          f"{sum(s == 'FAIL' for s in states.values())} failed, "
          f"{sum(s == 'PRUNED' for s in states.values())} pruned surplus), 1 killed "
          f"(trial {killed_trial}, redone as trial {retries[0].number}); MLflow: "
          f"{len(finished)} FINISHED trial runs, "
          f"{sum(r.info.status != 'FINISHED' for r in trial_runs)} unfinished (the killed "
          f"one), {len(sweeps)} sweep parent runs "
          f"({sum(r.info.status == 'FINISHED' for r in sweeps)} FINISHED)")
