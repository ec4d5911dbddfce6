"""Records: every discovery and evaluation is an MLflow run and a run directory.

    store        where runs go (results dir, tracking URI), opening a store, TrackingError
    mlflow_run   one MLflow run: RunHandle, run_context (nested runs, FINISHED/FAILED/KILLED)
    files        edge_scores.tsv, run ids
    recorder     Recorder: params, metrics, artifacts and run.json, partial outputs on failure
    runs         finding a run again, listing runs
    signals      SIGTERM/SIGHUP handled like Ctrl-C (KILLED runs, exit 143/129)

The names below are imported on first use, so ``acdc --help`` and option errors do not wait
for torch or mlflow.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "new_run_id": "files", "read_scores": "files", "write_scores": "files",
    "RunHandle": "mlflow_run", "active_run": "mlflow_run", "parent_run_id": "mlflow_run",
    "run_context": "mlflow_run", "Recorder": "recorder", "SourceRun": "runs",
    "find_run": "runs", "format_runs": "runs", "list_runs": "runs", "runs_json": "runs",
    "TrackingError": "store", "resolve_uri": "store", "results_dir": "store",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
