"""Records: every discovery and evaluation is an MLflow run and a run directory.

    store        where runs go (results dir, tracking URI), opening a store, TrackingError
    mlflow_run   one MLflow run: RunHandle, run_context (nested runs, FINISHED/FAILED/KILLED)
    files        edge_scores.tsv, run ids
    recorder     Recorder: params, metrics, artifacts and run.json, partial outputs on failure
    runs         finding a run again, listing runs
"""

from .files import new_run_id, read_scores, write_scores
from .mlflow_run import RunHandle, active_run, parent_run_id, run_context
from .recorder import Recorder
from .runs import SourceRun, find_run, format_runs, list_runs
from .store import TrackingError, resolve_uri, results_dir

__all__ = ["RunHandle", "run_context", "active_run", "parent_run_id", "Recorder", "SourceRun",
           "find_run", "list_runs", "format_runs", "new_run_id", "read_scores", "write_scores",
           "TrackingError", "resolve_uri", "results_dir"]
