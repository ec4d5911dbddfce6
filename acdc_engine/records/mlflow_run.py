"""One MLflow run: :class:`RunHandle` (log params, metrics, artifacts) and :func:`run_context`.

    from acdc_engine.records import run_context
    with run_context("ioi", "eap-ig tiny-ioi") as run:
        run.log_params({"method": "eap-ig", "ig_steps": 5})
        run.log_metrics({"faithfulness": 0.93})
        run.log_artifacts("results/ioi/some-run")

The context marks the run FINISHED, FAILED when the block raises (the exception propagates), or
KILLED on KeyboardInterrupt. ``enabled=False`` gives a handle whose methods do nothing
(``run_id`` is None), so calling code needs no branches.

Nested runs: ``nested=True`` makes the run a child (``mlflow.parentRunId``) of the innermost
active :func:`run_context` run in this context; in a context with none (a worker thread, e.g. an
optuna trial with ``n_jobs > 1``), of the most recently opened top-level run of the process that
is still open; else of the active fluent ``mlflow.start_run`` run. ``parent=RUN_ID`` names the
parent explicitly. A child without an explicit URI or experiment goes to its parent's store and
experiment (MLflow's UI groups children under their parent only within one experiment).
"""

from __future__ import annotations

import contextvars
import getpass
import json
import re
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from . import store
from .store import TrackingError, resolve_uri

__all__ = ["RunHandle", "run_context", "active_run", "parent_run_id", "FINISHED", "FAILED",
           "KILLED"]

FINISHED = "FINISHED"
"""MLflow status of a run that ended normally."""
FAILED = "FAILED"
"""MLflow status of a run that raised an error."""
KILLED = "KILLED"
"""MLflow status of an interrupted run (Ctrl-C, SIGTERM, SIGHUP)."""
MAX_PARAM_LEN = 6000  # MLflow's limit on a param value
_STACK: contextvars.ContextVar[tuple[RunHandle, ...]] = contextvars.ContextVar(
    "acdc_runs", default=()
)
_OPEN: list[RunHandle] = []  # every open run_context run of the process, oldest first
_OPEN_LOCK = threading.Lock()


# ----- the run handle -----------------------------------------------------------------------


@dataclass
class RunHandle:
    """One MLflow run (or a disabled stand-in whose methods do nothing, ``run_id`` None)."""

    experiment: str
    run_id: str | None = None
    experiment_id: str | None = None
    uri: str | None = None
    parent_id: str | None = None
    client: Any = field(default=None, repr=False)

    @property
    def enabled(self) -> bool:
        return self.run_id is not None

    @property
    def artifact_uri(self) -> str | None:
        if not self.enabled:
            return None
        run = self._call("read the run", lambda: self.client.get_run(self.run_id))
        return run.info.artifact_uri

    def _call(self, what: str, fn):
        try:
            return fn()
        except TrackingError:
            raise
        except Exception as e:
            raise TrackingError(self.uri or "?", f"{what} (run {self.run_id})", e) from e

    def log_params(self, params: dict) -> None:
        """Log ``params`` (None values skipped; dicts/lists as JSON; long values truncated)."""
        if not self.enabled or not params:
            return
        from mlflow.entities import Param

        items = [Param(_key(k), _param_value(v)) for k, v in params.items() if v is not None]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            chunk = items[i : i + 100]
            self._call("log params", lambda c=chunk: self.client.log_batch(self.run_id, params=c))

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        """Log numeric ``metrics`` (None values skipped) at ``step`` (default 0)."""
        if not self.enabled or not metrics:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(_key(k), float(v), now, int(step or 0))
                 for k, v in metrics.items() if v is not None]
        for i in range(0, len(items), 1000):
            chunk = items[i : i + 1000]
            self._call("log metrics", lambda c=chunk: self.client.log_batch(self.run_id, metrics=c))

    def log_series(self, key: str, values: dict[int, float]) -> None:
        """Log one metric at several steps (``{step: value}``) in a single batch."""
        if not self.enabled or not values:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(_key(key), float(v), now, int(step)) for step, v in values.items()
                 if v is not None]
        self._call("log metrics", lambda: self.client.log_batch(self.run_id, metrics=items))

    def set_tags(self, tags: dict) -> None:
        if not self.enabled or not tags:
            return
        from mlflow.entities import RunTag

        items = [RunTag(_key(k), str(v)) for k, v in tags.items() if v is not None]
        self._call("set tags", lambda: self.client.log_batch(self.run_id, tags=items))

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        if not self.enabled:
            return
        self._call(f"log artifact {path}",
                   lambda: self.client.log_artifact(self.run_id, str(path), artifact_path))

    def log_artifacts(self, directory: str | Path, artifact_path: str | None = None) -> None:
        """Log every file under ``directory`` (recursively)."""
        if not self.enabled:
            return
        self._call(f"log artifacts from {directory}",
                   lambda: self.client.log_artifacts(self.run_id, str(directory), artifact_path))


def _key(k) -> str:
    """MLflow keys allow letters, digits, ``_ - . / space``; anything else becomes ``_``."""
    return re.sub(r"[^\w\-./ ]", "_", str(k))[:250]


def _param_value(v) -> str:
    if isinstance(v, (dict, list, tuple)):
        v = json.dumps(v, sort_keys=True, default=str)
    s = str(v)
    return s if len(s) <= MAX_PARAM_LEN else s[: MAX_PARAM_LEN - 3] + "..."


# ----- the run context ----------------------------------------------------------------------


def active_run() -> RunHandle | None:
    """The innermost :func:`run_context` run open in this context (None if none)."""
    stack = _STACK.get()
    return stack[-1] if stack else None


def _outer_run() -> RunHandle | None:
    """The run a nested run would be a child of, among :func:`run_context` runs: the innermost
    one of this context, else (e.g. in a worker thread, which starts with an empty context) the
    most recently opened top-level run of the process that is still open."""
    outer = active_run()
    if outer is not None and outer.enabled:
        return outer
    with _OPEN_LOCK:
        top = [h for h in _OPEN if h.parent_id is None]
    return top[-1] if top else None


def _parent() -> tuple[str, str | None, str | None] | None:
    """(run id, experiment id, uri) of the parent a ``nested=True`` run gets, if any."""
    outer = _outer_run()
    if outer is not None:
        return outer.run_id, outer.experiment_id, outer.uri
    return _fluent_parent()


def parent_run_id() -> str | None:
    """The run a ``nested=True`` run would be a child of: the innermost :func:`run_context`
    run (of this context, else the latest open top-level one of the process), else the active
    fluent ``mlflow.start_run`` run; None if none."""
    found = _parent()
    return None if found is None else found[0]


def _fluent_parent() -> tuple[str, str, str] | None:
    """(run id, experiment id, uri) of the active ``mlflow.start_run`` run, if any."""
    if "mlflow" not in sys.modules:
        return None
    import mlflow

    run = mlflow.active_run()
    if run is None:
        return None
    return run.info.run_id, run.info.experiment_id, mlflow.get_tracking_uri()


@contextmanager
def run_context(
    experiment: str | None = None,
    run_name: str | None = None,
    *,
    enabled: bool = True,
    uri: str | None = None,
    nested: bool = False,
    tags: dict | None = None,
    parent: str | None = None,
) -> Iterator[RunHandle]:
    """Open an MLflow run in ``experiment`` for the duration of the block; yield its handle.

    ``experiment`` None means the parent's experiment for a nested run, else "Default".
    The run ends FINISHED, FAILED (the block raised; the exception propagates) or KILLED
    (KeyboardInterrupt). Raises :class:`TrackingError` if the store cannot be used.
    """
    if not enabled:
        yield RunHandle(experiment or "Default")
        return

    parent_id = parent
    parent_exp_id = None
    if nested and parent_id is None and (found := _parent()) is not None:
        parent_id, parent_exp_id, parent_uri = found
        uri = uri or parent_uri
    uri = resolve_uri(uri)
    client = store.client(uri)
    if parent_id is not None and parent_exp_id is None:
        try:
            parent_exp_id = client.get_run(parent_id).info.experiment_id
        except Exception as e:
            raise TrackingError(uri, f"find the parent run {parent_id}", e) from e
    if experiment is None and parent_exp_id is not None:
        exp_id = parent_exp_id
        experiment = client.get_experiment(exp_id).name
    else:
        experiment = experiment or "Default"
        exp_id = store.experiment_id(client, uri, experiment)

    run_tags = {"mlflow.user": getpass.getuser(), "mlflow.source.name": " ".join(sys.argv)[:500],
                "mlflow.source.type": "LOCAL", **(tags or {})}
    if parent_id is not None:
        run_tags["mlflow.parentRunId"] = parent_id
    try:
        run = client.create_run(exp_id, run_name=run_name,
                                tags={_key(k): str(v) for k, v in run_tags.items()})
    except Exception as e:
        raise TrackingError(uri, f"create a run in experiment {experiment!r}", e) from e
    handle = RunHandle(experiment, run.info.run_id, exp_id, uri, parent_id, client)
    token = _STACK.set((*_STACK.get(), handle))
    with _OPEN_LOCK:
        _OPEN.append(handle)
    status = FINISHED
    try:
        yield handle
    except KeyboardInterrupt:
        status = KILLED
        raise
    except BaseException:
        status = FAILED
        raise
    finally:
        _STACK.reset(token)
        with _OPEN_LOCK:
            _OPEN.remove(handle)
        try:
            client.set_terminated(handle.run_id, status)
        except Exception as e:
            err = TrackingError(uri, f"mark run {handle.run_id} {status}", e)
            if status == FINISHED:
                raise err from e
            warnings.warn(str(err), stacklevel=2)  # do not hide the exception in flight


