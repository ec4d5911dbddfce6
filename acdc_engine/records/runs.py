"""Finding a run again (:func:`find_run`) and listing recent runs (:func:`list_runs`)."""

from __future__ import annotations

import json
import math
import re
import tempfile
from datetime import datetime
from pathlib import Path

from ..errors import AcdcError
from . import store
from .store import TrackingError, resolve_uri, results_dir, sqlite_path

__all__ = ["RunRecord", "SourceRun", "find_run", "read_record", "list_runs", "format_runs",
           "runs_json", "matches", "finite"]

_RUN_ID = re.compile(r"^[0-9a-f]{32}$")


def finite(x) -> float | None:
    """``x`` as a float, or None if it is None or not finite (for tables and JSON)."""
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


# ----- finding a run again ------------------------------------------------------------------


class RunRecord:
    """What a run's ``record`` (its run.json) says: ``params`` and ``run_id``."""

    record: dict

    @property
    def params(self) -> dict:
        return self.record.get("params", {})

    @property
    def run_id(self) -> str | None:
        return self.record.get("run_id")


class SourceRun(RunRecord):
    """A previous run found by :func:`find_run`: its ``run.json`` and its scores file."""

    def __init__(self, ref: str, record: dict, scores_path: Path, where: str):
        self.ref, self.record, self.scores_path, self.where = ref, record, scores_path, where


def read_record(path: Path) -> dict:
    """A run's ``run.json`` as a dict ({} when there is none); a file that cannot be read or
    is not a JSON object is an :class:`AcdcError` naming it."""
    if not path.exists() and not path.is_symlink():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise AcdcError(f"{path} is not valid JSON ({e.msg} at line {e.lineno} column "
                        f"{e.colno}); it is not a run record acdc wrote, or it was damaged"
                        ) from None
    except (OSError, UnicodeDecodeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise AcdcError(f"cannot read the run record {path}: {why}") from None
    if not isinstance(record, dict):
        raise AcdcError(f"{path} is not a run record: expected a JSON object, got "
                        f"{type(record).__name__}")
    return record


def _from_dir(ref: str, d: Path, scores: Path | None = None) -> SourceRun:
    scores = scores or d / "edge_scores.tsv"
    if not scores.exists():
        raise AcdcError(f"run {ref!r} has no edge_scores.tsv in {d}")
    return SourceRun(ref, read_record(d / "run.json"), scores, str(d))


def find_run(ref: str, *, uri: str | None = None, results: Path | None = None) -> SourceRun:
    """A run from ``ref``: an ``edge_scores.tsv`` file, a run directory (or its run.json), or a
    run id (looked up under ``results/*/<id>/`` first, then in the MLflow store at ``uri``)."""
    p = Path(ref)
    if p.is_file():
        if p.suffix.lower() == ".json":  # run.json, or another file of the run (circuit.json)
            return _from_dir(ref, p.parent)
        return SourceRun(ref, read_record(p.parent / "run.json"), p, str(p.parent))
    if p.is_dir():
        return _from_dir(ref, p)
    root = results or results_dir()
    local = sorted(root.glob(f"*/{ref}/edge_scores.tsv")) if re.fullmatch(r"[\w.\-]+", ref) else []
    if local:
        return _from_dir(ref, local[0].parent)
    if not _RUN_ID.match(ref):
        raise AcdcError(f"no run {ref!r}: not a scores file, a run directory, or a run id "
                        f"under {root} or in the MLflow store")
    return _from_mlflow(ref, resolve_uri(uri))


def _from_mlflow(run_id: str, uri: str) -> SourceRun:
    client = store.client(uri)
    try:
        client.get_run(run_id)
    except Exception as e:
        raise AcdcError(
            f"no run {run_id!r} in the MLflow store {uri!r} ({type(e).__name__}: {e})"
        ) from None
    dest = Path(tempfile.mkdtemp(prefix="acdc-source-"))
    try:
        scores = Path(client.download_artifacts(run_id, "edge_scores.tsv", str(dest)))
    except Exception as e:
        raise TrackingError(uri, f"download edge_scores.tsv of run {run_id}", e) from e
    try:
        record = json.loads(
            Path(client.download_artifacts(run_id, "run.json", str(dest))).read_text())
    except Exception:
        run = client.get_run(run_id)
        record = {"run_id": run_id, "params": dict(run.data.params)}
    return SourceRun(run_id, record, scores, f"MLflow run {run_id} in {uri}")


# ----- listing runs -------------------------------------------------------------------------

COLUMNS = [("started", 16), ("experiment", 12), ("run id", 32), ("kind", 8), ("status", 8),
           ("method", 8), ("model", 14), ("edges", 7), ("faith", 6), ("CPR", 6), ("CMD", 6),
           ("time s", 7)]


FILTERS = ("task", "method", "model")
"""What :func:`list_runs`'s ``where`` can filter on."""

_SEARCH_MAX = 5000  # runs read from MLflow when filtering (the filter runs on them here)


def matches(row: dict, where: dict[str, str] | None) -> bool:
    """Whether a :func:`list_runs` row has every ``where`` value: ``task``, ``method`` or
    ``model``, equal, or equal to the last part of a path (a model directory, a pairs file's
    name or stem); ``task`` matches the experiment too."""
    for key, want in (where or {}).items():
        if key not in FILTERS:
            raise AcdcError(f"cannot filter runs on {key!r} (only on {', '.join(FILTERS)})")
        have = [str(row.get(key) or "")] + ([str(row.get("experiment") or "")]
                                             if key == "task" else [])
        names = {h for v in have if v for h in (v, Path(v).name, Path(v).stem)}
        if want not in names:
            return False
    return True


def list_runs(*, experiment: str | None = None, limit: int = 20, uri: str | None = None,
              track: bool = True, results: Path | None = None,
              where: dict[str, str] | None = None) -> tuple[list[dict], str]:
    """Recent runs, newest first, and where they came from ("mlflow URI" or "run.json files");
    ``where``: only the runs that :func:`matches` (e.g. ``{"method": "eap"}``).

    From the MLflow store when ``track`` (and the store exists), else from
    ``results/*/*/run.json``.
    """
    root = results or results_dir()
    where = {k: v for k, v in (where or {}).items() if v is not None}
    matches({}, {k: "" for k in where})  # an unknown key is an error, with or without runs
    if track:
        resolved = resolve_uri(uri)
        db = sqlite_path(resolved)
        if db is None or db.exists():  # do not create an empty store just to list it
            rows = _mlflow_runs(resolved, experiment, _SEARCH_MAX if where else limit)
            return [r for r in rows if matches(r, where)][:limit], f"MLflow store {resolved}"
    rows = _local_runs(root, experiment, None)
    return [r for r in rows if matches(r, where)][:limit], f"run.json files under {root}"


def _mlflow_runs(uri: str, experiment: str | None, limit: int) -> list[dict]:
    client = store.client(uri)
    try:
        exps = client.search_experiments()
        names = {e.experiment_id: e.name for e in exps}
        ids = [i for i, n in names.items() if experiment is None or n == experiment]
        if not ids:
            return []
        runs = client.search_runs(ids, max_results=limit, order_by=["attributes.start_time DESC"])
    except Exception as e:
        raise TrackingError(uri, "list runs", e) from e
    rows = []
    for r in runs:
        p, m = r.data.params, r.data.metrics
        rows.append({
            "started": datetime.fromtimestamp(r.info.start_time / 1000).strftime("%Y-%m-%d %H:%M"),
            "experiment": names.get(r.info.experiment_id, "?"), "run id": r.info.run_id,
            "kind": r.data.tags.get("acdc.kind", ""), "status": r.info.status,
            "method": p.get("method", ""), "model": p.get("model", ""),
            "task": p.get("task", ""), "edges": m.get("edges"),
            "faith": m.get("faithfulness"), "CPR": m.get("cpr"), "CMD": m.get("cmd"),
            "time s": m.get("wall_time_s"),
        })
    return rows


def _local_runs(root: Path, experiment: str | None, limit: int | None) -> list[dict]:
    rows = []
    for rj in root.glob("*/*/run.json"):
        try:
            rec = json.loads(rj.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(rec, dict):  # not a run record: not a run
            continue
        exp = rec.get("experiment") or rj.parent.parent.name
        if experiment is not None and exp != experiment:
            continue
        p, m = (v if isinstance(v := rec.get(k), dict) else {} for k in ("params", "metrics"))
        created = str(rec.get("created") or "")
        try:
            started = datetime.fromisoformat(created).astimezone().strftime("%Y-%m-%d %H:%M")
        except ValueError:
            started = created[:16]
        rows.append({"_sort": created, "started": started, "experiment": exp,
                     "run id": rec.get("run_id") or rj.parent.name, "kind": rec.get("kind", ""),
                     "status": rec.get("status", ""), "method": p.get("method", ""),
                     "model": p.get("model", ""), "task": p.get("task", ""),
                     "edges": m.get("edges"),
                     "faith": m.get("faithfulness"), "CPR": m.get("cpr"), "CMD": m.get("cmd"),
                     "time s": m.get("wall_time_s")})
    rows.sort(key=lambda r: r.pop("_sort"), reverse=True)
    return rows if limit is None else rows[:limit]


def _number(f: float, width: int) -> str:
    """``f`` in at most ``width`` characters, sign and leading digits kept (fewer significant
    digits, then scientific notation, rather than cutting characters off)."""
    if f.is_integer() and abs(f) >= 10 and len(f"{int(f)}") <= width:
        return f"{int(f)}"
    for digits in (3, 2, 1):
        s = f"{f:.{digits}g}"
        if len(s) <= width:
            return s
    return f"{f:.0e}"


def _cell(v, width: int) -> str:
    if v is None or v == "":
        s = "-"
    elif isinstance(v, float):
        f = finite(v)
        s = "nan" if f is None else _number(f, width)
    else:
        s = str(v)
    if len(s) > width:  # keep the end of long names (paths): it is the informative part
        s = "…" + s[-(width - 1):]
    return s.ljust(width)


def format_runs(rows: list[dict]) -> str:
    """A fixed-width table of :func:`list_runs` rows."""
    header = "  ".join(name.ljust(w) for name, w in COLUMNS).rstrip()
    lines = [header, "  ".join("-" * w for _, w in COLUMNS)]
    for r in rows:
        lines.append("  ".join(_cell(r.get(name), w) for name, w in COLUMNS).rstrip())
    return "\n".join(lines)


_JSON_KEYS = {"run id": "run_id", "faith": "faithfulness", "CPR": "cpr", "CMD": "cmd",
              "time s": "time_s"}


def runs_json(rows: list[dict]) -> list[dict]:
    """:func:`list_runs` rows for JSON: snake_case keys, numbers finite or null."""
    out = []
    for r in rows:
        d = {}
        for k, v in r.items():
            if isinstance(v, float) or (isinstance(v, (int,)) and not isinstance(v, bool)):
                v = finite(v)
            d[_JSON_KEYS.get(k, k)] = v
        out.append(d)
    return out
