"""Recording a run: :class:`Recorder` mirrors a run into MLflow and its run directory.

``run.json`` holds everything needed to reproduce the run (model id, revision and weights hash;
task and data hash; method and settings; metric, ablation, seed; versions; the equivalent
``acdc`` command, shell-quoted) and its results, and a ``status`` (FINISHED, FAILED or KILLED,
with the error). A failed run keeps whatever it computed.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .files import now
from .mlflow_run import RunHandle
from .store import TrackingError

__all__ = ["Recorder"]


class Recorder:
    """Mirrors a run into its MLflow run (``handle``) and its run directory.

    ``out`` is the run directory; None with tracking on means a temporary directory that is
    removed once its files are logged (kept, and named, if logging fails).
    """

    def __init__(self, handle: RunHandle, kind: str, out: Path | None, record: dict):
        self.handle, self.kind = handle, kind
        self.temporary = out is None
        self.dir = Path(out) if out is not None else (
            Path(tempfile.mkdtemp(prefix=f"acdc-{kind}-")) if handle.enabled else None)
        self.record = {"kind": kind, "run_id": handle.run_id, "experiment": handle.experiment,
                       "tracking_uri": handle.uri, "parent_run_id": handle.parent_id,
                       "status": "RUNNING", "error": None, "created": now(), **record}
        self.record.setdefault("params", {})
        self.record.setdefault("metrics", {})
        self.tracking_error: TrackingError | None = None

    @property
    def run_id(self) -> str | None:
        return self.handle.run_id

    def _track(self, fn, *args, **kw) -> None:
        """Call a tracking method. If the store fails, say so once and go on without it: the
        run directory keeps everything, and :meth:`finish` raises the error at the end."""
        if self.tracking_error is not None or not self.handle.enabled:
            return
        try:
            fn(*args, **kw)
        except TrackingError as e:
            self.tracking_error = e
            print(f"warning: {e}; going on without tracking, the run directory {self.dir} "
                  "keeps every output", file=sys.stderr)

    def log_params(self, params: dict) -> None:
        self.record["params"].update(params)
        self._track(self.handle.log_params, params)

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        if step is None:
            self.record["metrics"].update(metrics)
        self._track(self.handle.log_metrics, metrics, step=step)

    def log_series(self, key: str, values: dict[int, float]) -> None:
        self._track(self.handle.log_series, key, values)

    def ensure_dir(self) -> None:
        """Create the run directory now; one that cannot be created is an error naming it
        (before any model work, so nothing computed is lost)."""
        if self.dir is None:
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            probe = self.dir / ".acdc-write-test"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            from ..errors import AcdcError

            where, self.dir = self.dir, None  # nothing can be kept there
            raise AcdcError(f"cannot write the output directory {where}: "
                            f"{e.strerror or e}") from None

    def path(self, name: str) -> Path | None:
        """``name`` in the run directory (created on first use); None when nothing is kept.

        A run directory that can no longer be written (removed, replaced, out of space) is
        replaced by a new temporary one, and the user is told where (:meth:`rescue`)."""
        if self.dir is None:
            return None
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            self.rescue(e)
        return self.dir / name

    def write(self, name: str, writer) -> Path | None:
        """Write file ``name`` of the run directory with ``writer(path)``; if that fails (the
        disk is full, the directory is gone) the partial file is removed and the run's outputs
        move to a new directory (:meth:`rescue`), where the file is written again. None when
        nothing is kept."""
        p = self.path(name)
        if p is None:
            return None
        try:
            writer(p)
            return p
        except OSError as e:
            _remove(p)
            p = self.rescue(e) / name
            writer(p)
            return p

    def rescue(self, error: OSError) -> Path:
        """Move the run's outputs to a new directory after writing to the run directory failed:
        files already there are copied (as far as they can be read), later files go there, and
        the user is told where on stderr and in run.json (``kept_in``)."""
        old, new = self.dir, Path(tempfile.mkdtemp(prefix="acdc-kept-"))
        if old is not None and old.is_dir():
            for f in old.iterdir():
                try:
                    if f.is_file() and f.stat().st_size > 0 and not f.name.startswith("."):
                        shutil.copy2(f, new / f.name)  # (an empty file is a failed write)
                except OSError:
                    pass
        self.dir, self.temporary = new, False
        self.record["kept_in"] = str(new)
        print(f"warning: cannot write the run directory {old} ({error.strerror or error}); "
              f"the run's outputs are kept in {new}", file=sys.stderr)
        return new

    def write_json(self) -> None:
        p = self.path("run.json")
        if p is None:
            return
        for attempt in (0, 1):
            try:
                files = sorted(f.name for f in self.dir.iterdir()
                               if f.is_file() and f.name != "run.json"
                               and not f.name.startswith("."))
                self.record["artifacts"] = [*files, "run.json"]
                write_atomic(p, json.dumps(self.record, indent=2, default=str))
                return
            except OSError as e:
                if attempt:
                    raise
                p = self.rescue(e) / "run.json"

    def finish(self) -> None:
        """Write run.json (status FINISHED) and log the run directory as artifacts.

        Raises the first :class:`TrackingError` of the run, if any, naming the directory that
        keeps the outputs (a temporary one is then not removed)."""
        self.record.update(status="FINISHED", finished=now())
        self.write_json()
        if self.dir is not None:
            self._track(self.handle.log_artifacts, self.dir)
        if self.tracking_error is not None:
            err = self.tracking_error
            err.kept = self.dir
            self.record["tracking_error"] = str(err)
            self.write_json()
            raise err
        self._cleanup()

    def fail(self, exc: BaseException) -> None:
        """Keep the partial outputs: run.json with the error, and log what there is."""
        if exc is self.tracking_error and self.record.get("status") == "FINISHED":
            return  # finish() recorded it: the run's work is complete and on disk
        status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"  # and SIGTERM
        self.record.update(status=status, finished=now(),
                           error=f"{type(exc).__name__}: {exc}".strip())
        try:
            self.write_json()
            if self.dir is not None:
                self._track(self.handle.log_artifacts, self.dir)
        except OSError as e:  # disk trouble on top of the failure: do not hide the failure
            print(f"warning: could not write the partial outputs to {self.dir}: {e}",
                  file=sys.stderr)
            return
        if self.tracking_error is not None:
            self.record["tracking_error"] = str(self.tracking_error)
            self.write_json()
            print(f"warning: the partial outputs of this run are kept in {self.dir}",
                  file=sys.stderr)
        else:
            self._cleanup()

    def _cleanup(self) -> None:
        if self.temporary and self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same directory and
    ``os.replace``: a reader (or a full disk) never leaves a half-written or empty file; on
    failure the temporary file is removed and ``path`` is as it was."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
