"""Three processes that use a new SQLite MLflow store at the same moment all succeed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from acdc_engine.records.store import TrackingError, _open

SCRIPT = """
import sys, time
from acdc_engine.records import run_context
start = float(sys.argv[2])
while time.time() < start:  # all three open the fresh store together
    time.sleep(0.01)
with run_context("race", f"worker {sys.argv[3]}", uri=sys.argv[1]) as run:
    run.log_metrics({"x": 1.0})
print("ok", run.run_id)
"""


@pytest.mark.slow
def test_three_processes_on_a_fresh_sqlite_store(tmp_path):
    import time

    uri = f"sqlite:///{tmp_path / 'fresh' / 'mlflow.db'}"
    start = time.time() + 20  # after the imports of all three (a loaded 2-core machine)
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, uri, str(start), str(i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "broken" not in err and "failed to open" not in err
    from mlflow import MlflowClient

    runs = MlflowClient(uri).search_runs(
        [MlflowClient(uri).get_experiment_by_name("race").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 3


def test_a_race_error_is_retried_and_a_real_error_is_not():
    calls = []

    class Flaky:
        def __init__(self, tracking_uri):
            calls.append(tracking_uri)

        def search_experiments(self, max_results):
            if len(calls) < 3:
                raise RuntimeError("(sqlite3.OperationalError) table experiments already exists")

    assert isinstance(_open(Flaky, "sqlite:///x.db", retry=True), Flaky)
    assert len(calls) == 3

    class Broken(Flaky):
        def search_experiments(self, max_results):
            raise RuntimeError("file is not a database")

    calls.clear()
    with pytest.raises(TrackingError, match="file is not a database"):
        _open(Broken, "sqlite:///x.db", retry=True)
    assert len(calls) == 1
