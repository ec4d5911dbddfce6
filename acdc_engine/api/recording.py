"""The one recording layer: a run's params, metrics, files, pictures, MLflow run and the
command that repeats it.

:func:`recorded` opens the MLflow run and the run directory around a piece of work, and on any
failure marks the run FAILED (KILLED on Ctrl-C) with what was computed kept; a tracking store
that fails after the work is done leaves the result on disk and says where.
:func:`record_discovery` and :func:`record_evaluation` write a finished result.
"""

from __future__ import annotations

import json
import platform
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, TypeVar

from .. import __version__
from ..errors import AcdcError
from ..evaluation.curves import Curve
from ..models import LoadedModel
from ..records import Recorder, TrackingError, new_run_id, run_context, write_scores
from ..records.store import safe_name
from ..resources import peak_memory_mb
from ..tasks import TaskData
from .config import RecordConfig
from .results import DiscoveryResult, EvaluationResult

__all__ = ["recorded", "record_discovery", "record_evaluation", "versions", "model_params",
           "command"]

R = TypeVar("R", DiscoveryResult, EvaluationResult)


def versions() -> dict:
    """The versions of Python, acdc-engine and the libraries a result depends on (logged with
    every run)."""
    import importlib.metadata as md

    out = {"python": platform.python_version(), "acdc-engine": __version__}
    for pkg in ("torch", "transformers", "nnsight", "networkx", "mlflow"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def version_params() -> dict:
    return {f"version.{k}": v for k, v in versions().items()}


def model_params(lm: LoadedModel, data: TaskData) -> dict:
    """The run parameters that identify the model and the data (id, revision, weights and data
    hashes, family, examples, device (the first) and devices (all of them), dtype)."""
    return {"model": lm.id, "model_revision": lm.revision, "weights_hash": lm.weights_hash,
            "family": lm.family, "data_hash": data.data_hash, "n_examples": len(data),
            "device": str(lm.device), "devices": ",".join(lm.devices),
            "dtype": str(lm.dtype).replace("torch.", "")}


def _run_devices(params: dict) -> list[str] | None:
    """The devices a run's model was on (``devices``, else ``device``): the peak memory of a
    model spread over GPUs is the sum over all of them, not the first one's."""
    devices = params.get("devices") or params.get("device") or ""
    return [d for d in str(devices).split(",") if d] or None


def command(params: dict, settings: dict) -> str:
    """The ``acdc discover`` command line that repeats a run, quoted for a POSIX shell."""
    parts = ["acdc", "discover", "--model", str(params["model"]),
             "--task", str(params.get("task_ref") or params["task"]),
             "--method", str(params["method"]), "--metric", str(params["metric"]),
             "--ablation", str(params["ablation"]), "--examples", str(params["n_examples"]),
             "--batch-size", str(params["batch_size"]), "--seed", str(params["seed"]),
             "--dtype", str(params["dtype"])]
    if params.get("model_revision"):
        parts += ["--revision", str(params["model_revision"])]
    if params.get("n_edges_requested") is not None:
        parts += ["--edges", str(params["n_edges_requested"])]
    elif params.get("threshold") is not None:
        parts += ["--threshold", str(params["threshold"])]
    else:
        parts += ["--target", str(params["target"])]
    if params.get("selection") not in (None, "topk", "threshold", "target"):
        parts += ["--selection", str(params["selection"])]
    for key in ("ensemble", "normalisation", "bootstrap", "min_frequency", "ilp_time_limit"):
        if params.get(key) is not None:
            parts += [f"--{key.replace('_', '-')}", str(params[key])]
    for k, v in settings.items():
        parts += ["--set", f"{k}={v}"]
    return shlex.join(parts)


def recorded(kind: str, run_name: str, rc: RecordConfig, experiment: str | None,
             record: dict, tags: dict, work: Callable[[Recorder], R]) -> R:
    """Run ``work(recorder)`` inside an MLflow run and its run directory (see the module
    docstring); returns its result with ``out_dir``, ``run_id`` and ``tracking_uri`` set."""
    result = None
    if rc.out is not None:
        claim_out(Path(rc.out), rc.overwrite)
    try:
        with run_context(experiment, run_name, enabled=rc.track, uri=rc.tracking_uri,
                         nested=rc.nested, tags={"acdc.kind": kind, **tags}) as run:
            run_id = run.run_id or new_run_id(run_name.split()[0])
            out_dir = Path(rc.out) if rc.out is not None else (
                Path(rc.results) / safe_name(run.experiment) / run_id
                if rc.results is not None else None)
            rec = Recorder(run, kind, out_dir, {"run_id": run_id, "versions": versions(),
                                                **record})
            try:
                rec.ensure_dir()  # an output location that cannot be written fails now
                result = work(rec)
                result.out_dir = None if rec.temporary else rec.dir
                result.run_id, result.tracking_uri = run.run_id, run.uri
                rec.finish()
            except BaseException as e:
                rec.fail(e)
                raise
    except TrackingError as e:
        if result is None:
            raise
        result.tracking_error = str(e)  # computed and kept on disk, but not (all) logged
        print(f"error: {e}", file=sys.stderr)
    return result


def claim_out(out: Path, overwrite: bool) -> None:
    """Refuse an output directory that holds a run already (its run.json), unless
    ``overwrite``: then that run's files (those its run.json lists) are removed first, so no
    file of the old run is mistaken for the new one's."""
    rj = out / "run.json"
    if not (rj.is_file() or rj.is_symlink()):
        return
    if not overwrite:
        raise AcdcError(f"the output directory {out} holds a run already (its run.json); "
                        "choose another --out, or pass --overwrite to replace that run")
    try:
        old = json.loads(rj.read_text())
        names = old.get("artifacts") if isinstance(old, dict) else None
    except (OSError, ValueError):
        names = None
    for name in {*(n for n in names or () if isinstance(n, str)), "run.json"}:
        f = out / name
        if Path(name).name == name and (f.is_file() or f.is_symlink()):
            try:
                f.unlink()
            except OSError as e:
                raise AcdcError(f"cannot replace the run in {out}: {f}: {e.strerror or e}"
                                ) from None


def _picture(what: str, fn, *args, **kw):
    """Draw a picture; a missing renderer or a failing one must not cost the run."""
    try:
        return fn(*args, **kw)
    except AcdcError as e:
        print(f"warning: no {what}: {e}", file=sys.stderr)
    except Exception as e:
        print(f"warning: could not draw the {what}: {type(e).__name__}: {e}", file=sys.stderr)
    return None


def _draw_circuit(rec: Recorder, circuit) -> None:
    """circuit.svg/.png/.html in the run directory; if the directory cannot take them (a full
    disk), the partial files go and the pictures are drawn where the outputs are rescued to."""
    from ..render import render_circuit

    try:
        render_circuit(circuit, rec.dir)
        return
    except OSError as e:
        for suffix in (".svg", ".png", ".html"):
            try:
                (rec.dir / f"circuit{suffix}").unlink(missing_ok=True)
            except OSError:
                pass
        rec.rescue(e)
    except Exception:
        pass  # drawn again below, which says why it failed
    _picture("circuit picture", render_circuit, circuit, rec.dir)


def record_curve(rec: Recorder, curve: Curve, title: str | None) -> None:
    """curve.tsv and curve.png (not when ``title`` is None) in the run directory; the curve as
    an MLflow metric series ``curve_faithfulness``, step = the budget in per mille of edges."""
    rec.record["curve"] = curve.as_dict()
    if rec.write("curve.tsv", curve.write_tsv) is not None:
        if title is not None:
            from ..render import plot_curve

            title = f"{title}  CPR {curve.cpr:.3f}  CMD {curve.cmd:.3f}".strip()
            _picture("curve picture", plot_curve, [100 * x for x in curve.fractions],
                     list(curve.normalized), rec.path("curve.png"), title=title)
    rec.log_series("curve_faithfulness",
                   {round(b * 10): f for b, f in zip(curve.budgets, curve.normalized)})


def record_ground_truth(rec: Recorder, gt: dict | None) -> None:
    if gt is None:
        return
    rec.log_params({"ground_truth": gt["ground_truth"]})
    rec.log_metrics({"edge_roc_auc": gt["edge_roc_auc"], "node_roc_auc": gt["node_roc_auc"]})
    rec.record["ground_truth"] = gt


def record_discovery(rec: Recorder, result: DiscoveryResult, settings: dict,
                     render: bool) -> None:
    """circuit.json, pictures, curve, metrics and the run.json fields of a discovery."""
    circuit, faith, curve, g = result.circuit, result.faithfulness, result.curve, result.graph
    circuit.attrs.update(created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                         run_id=rec.run_id or "", versions=json.dumps(versions()))
    if rec.write("circuit.json", circuit.save) is not None:
        if render:
            _draw_circuit(rec, circuit)
    if curve is not None:
        p = result.params
        record_curve(rec, curve, f"{p['method']} on {p['task']}" if render else None)
    metrics = {
        "faithfulness": faith.normalized, "faithfulness_raw": faith.circuit,
        "metric_full": faith.full, "metric_empty": faith.empty,
        "edges": circuit.number_of_edges(), "nodes": circuit.number_of_nodes(),
        "edges_total": g.n_edges, "wall_time_s": result.timings["total_s"],
        **{k: result.timings[k] for k in ("load_s", "scoring_s", "evaluation_s")},
        "peak_memory_mb": peak_memory_mb(_run_devices(result.params)),
    }
    if curve is not None:
        metrics.update(cpr=curve.cpr, cmd=curve.cmd)
    metrics.update({f"info.{k}": float(v) for k, v in result.info.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)})
    record_ground_truth(rec, result.ground_truth)
    rec.log_metrics(metrics)
    rec.record.update(params=result.params, faithfulness=faith.as_dict(),
                      timings=result.timings, n_edges=circuit.number_of_edges(),
                      n_edges_total=g.n_edges, command=command(result.params, settings),
                      warnings=result.warnings)


def record_evaluation(rec: Recorder, result: EvaluationResult, graph, scores,
                      render: bool = True) -> None:
    """Scores, curve, metrics and run.json fields of an evaluation."""
    curve = result.curve
    rec.write("edge_scores.tsv", lambda p: write_scores(p, graph, scores, keep=False))
    record_ground_truth(rec, result.ground_truth)
    method = result.params.get("method") or "scores"
    record_curve(rec, curve, f"{method} on {result.params['task']}" if render else None)
    rec.log_metrics({"cpr": curve.cpr, "cmd": curve.cmd, "metric_full": curve.full,
                     "metric_empty": curve.empty, "edges_total": graph.n_edges,
                     "wall_time_s": result.timings["total_s"],
                     "evaluation_s": result.timings["evaluation_s"],
                     "peak_memory_mb": peak_memory_mb(_run_devices(result.params))})
    rec.record.update(params=result.params, timings=result.timings, warnings=result.warnings)
