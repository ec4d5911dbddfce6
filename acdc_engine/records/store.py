"""Where runs go: the results directory, the tracking URI, and opening an MLflow store.

:func:`resolve_uri` picks the store: an explicit URI (``--tracking-uri``), else the
``MLFLOW_TRACKING_URI`` environment variable, else an embedded SQLite store
``sqlite:///<abs>/results/mlflow.db`` (the results directory is ``$ACDC_RESULTS`` or
``./results``). Any MLflow tracking URI works: ``http://host:5000``, ``databricks``,
``postgresql://...``. For SQLite stores the artifacts of an experiment go next to the database
(``<db dir>/mlartifacts/<experiment>/``), not into ``./mlruns`` of the working directory.
A store that cannot be reached or used raises :class:`TrackingError` naming the URI and what
failed. mlflow is imported lazily.
"""

from __future__ import annotations

import logging
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import AcdcError

__all__ = ["TrackingError", "results_dir", "resolve_uri", "safe_name", "sqlite_path", "client",
           "experiment_id"]


class TrackingError(AcdcError):
    """The MLflow tracking store could not be reached or used; names the URI and the step."""

    def __init__(self, uri: str, what: str, cause: BaseException | str):
        self.uri, self.what = uri, what
        detail = cause if isinstance(cause, str) else f"{type(cause).__name__}: {cause}"
        detail = str(detail).strip().splitlines()[0][:300] if str(detail).strip() else detail
        super().__init__(
            f"MLflow tracking store {uri!r} failed to {what}: {detail} "
            "(set --tracking-uri / MLFLOW_TRACKING_URI to a working store, or use --no-track)"
        )
        self.kept: Path | None = None  # where the run's outputs were kept, when known

    def __str__(self) -> str:
        kept = f"; the run's outputs are kept in {self.kept}" if self.kept else ""
        return f"{self.args[0]}{kept}"




def results_dir() -> Path:
    """The results root: ``$ACDC_RESULTS`` or ``./results``, as an absolute path."""
    return Path(os.environ.get("ACDC_RESULTS", "results")).resolve()


def resolve_uri(uri: str | None = None) -> str:
    """The tracking URI to use: ``uri`` > ``$MLFLOW_TRACKING_URI`` > SQLite under results/.

    Relative SQLite paths are made absolute (against the working directory), so the same run
    logged from two directories does not land in two databases.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri.strip():
        return f"sqlite:///{results_dir() / 'mlflow.db'}"
    uri = uri.strip()
    path = sqlite_path(uri)
    if path is not None and not path.is_absolute():
        return f"sqlite:///{path.resolve()}"
    return uri


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///path`` URI (None for other stores and :memory:)."""
    if not uri.startswith("sqlite:///"):
        return None
    rest = uri[len("sqlite:///"):].split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest)


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of a SQLite store live next to the database, not in ./mlruns."""
    db = sqlite_path(uri)
    if db is None:
        return None
    return (db.parent / "mlartifacts" / safe_name(experiment)).as_uri()


def safe_name(name: str) -> str:
    """``name`` with everything but letters, digits, ``.``, ``-`` and ``_`` replaced by ``_``: a
    safe file or run name (``run`` when nothing is left)."""
    return re.sub(r"[^\w.\-]+", "_", name).strip("._") or "run"


_CLIENTS: dict[str, Any] = {}


def client(uri: str):
    """An ``MlflowClient`` for ``uri``, after checking the store answers (once per process:
    opening a SQL store checks its schema, which costs more than logging a run)."""
    if uri in _CLIENTS:
        return _CLIENTS[uri]
    from ..extras import require

    MlflowClient = require("mlflow", "tracking", "tracking runs (or pass --no-track)").MlflowClient
    for name in ("mlflow.store.db.utils", "alembic.runtime.migration", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)  # no migration chatter on first use
    db = sqlite_path(uri)
    if db is not None:
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            blocker = next((a for a in (db.parent, *db.parent.parents) if a.exists()), None)
            why = (f"{blocker} is a file, not a directory" if blocker is not None
                   and not blocker.is_dir() else e.strerror or e)
            raise TrackingError(uri, f"create the directory {db.parent}", str(why)) from e
        why = _sqlite_problem(db)  # fail in a second, not after mlflow's ~110 s of retries
        if why is not None:
            raise TrackingError(uri, "open the store", why)
    env = {}
    if uri.startswith(("http://", "https://")):  # fail in seconds, not after minutes of retries
        env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
        env = {k: v for k, v in env.items() if k not in os.environ}
    os.environ.update(env)
    try:
        with _init_lock(db):
            client = _open(MlflowClient, uri, retry=db is not None)
    finally:
        for k in env:
            os.environ.pop(k, None)
    _CLIENTS[uri] = client
    return client


def _sqlite_problem(db: Path) -> str | None:
    """Why the SQLite database ``db`` cannot be used for writing (None when it can, or when it
    is busy: another process's lock is waited for by mlflow). Checked with :mod:`sqlite3`
    directly: opening (creating) the file, reading its header, taking the write lock."""
    import sqlite3
    from urllib.parse import quote

    if db.is_dir():
        return f"{db} is a directory, not a database file"
    try:
        con = sqlite3.connect(f"file:{quote(str(db))}?mode=rwc", uri=True, timeout=5,
                              isolation_level=None)
    except sqlite3.Error as e:
        return f"{db} cannot be opened or created ({e}): is its directory writable?"
    try:
        version = con.execute("PRAGMA user_version").fetchone()[0]  # "file is not a database"
        con.execute("BEGIN IMMEDIATE")
        try:  # a write, rolled back: "attempt to write a readonly database"
            con.execute(f"PRAGMA user_version = {int(version)}")
        finally:
            con.execute("ROLLBACK")
    except sqlite3.Error as e:
        if "locked" in str(e).lower() or "busy" in str(e).lower():
            return None
        return f"{db}: {e}"
    finally:
        con.close()
    return None


_TRANSIENT = ("already exists", "database is locked", "duplicate column", "unique constraint")


def _open(MlflowClient, uri: str, retry: bool, attempts: int = 6):
    """An MlflowClient that has answered a query. On a SQLite store, errors that a concurrent
    first use causes (another process creating the same tables) are retried with back-off, so
    a good store is never reported broken; anything else, or the last attempt, is a
    :class:`TrackingError`."""
    for attempt in range(attempts):
        try:
            client = MlflowClient(tracking_uri=uri)
            client.search_experiments(max_results=1)
            return client
        except Exception as e:
            transient = any(t in str(e).lower() for t in _TRANSIENT)
            if not (retry and transient) or attempt == attempts - 1:
                raise TrackingError(uri, "open the store", e) from e
            time.sleep(0.2 * 2**attempt)


@contextmanager
def _init_lock(db: Path | None) -> Iterator[None]:
    """Hold an exclusive lock on ``<db>.lock`` (next to a SQLite database) while the store is
    opened: the first use creates its tables, which several processes must not do at once."""
    if db is None:
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: the retries in _open cover the race
        yield
        return
    try:
        f = open(db.parent / f"{db.name}.lock", "a")
    except OSError:  # a read-only directory: opening the store says what is wrong
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def experiment_id(client, uri: str, name: str) -> str:
    """The id of MLflow experiment ``name`` in the store at ``uri``, created if missing (a race
    with another process creating it is handled)."""
    try:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                client.restore_experiment(exp.experiment_id)
            return exp.experiment_id
        try:
            return client.create_experiment(name, artifact_location=_artifact_location(uri, name))
        except Exception:  # created by someone else meanwhile
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise
            return exp.experiment_id
    except Exception as e:
        raise TrackingError(uri, f"get or create experiment {name!r}", e) from e


