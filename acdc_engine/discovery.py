"""``discover()``: the whole job in one call: model + task -> scored circuit with faithfulness.

    from acdc_engine import discover
    result = discover(task="ioi", method="eap-ig", n_edges=60)
    result.circuit            # networkx MultiDiGraph of kept edges
    result.faithfulness       # Faithfulness(circuit, full, empty).normalized
    result.curve.cpr          # MIB's area under the faithfulness curve (see curves.py)
    result.run_id             # the MLflow run it was logged to

The CLI's ``acdc discover`` is a thin wrapper. With neither ``n_edges`` nor ``threshold`` the
circuit is the smallest top-n set on the budget grid (0.1% ... 100% of edges) whose normalized
faithfulness reaches ``target`` (default 0.8); the same evaluations give the faithfulness curve.

Every call is an MLflow run (``track=False`` turns it off; see tracking.py and runs.py):
params, metrics and the run directory's files as artifacts; a failure marks the run FAILED and
keeps what was computed. :func:`evaluate_scores` computes the curve of saved scores.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import networkx as nx
import torch

from . import __version__
from .circuits import prune_dead, save_circuit, select, to_networkx
from .curves import BUDGETS, Curve, faithfulness_curve
from .errors import AcdcError, UnknownNameError
from .evaluation import Faithfulness, faithfulness, make_batches
from .graph import Graph
from .groundtruth import GroundTruth, evaluate_ground_truth, ground_truth_for, load_ground_truth
from .models import LoadedModel, load_model, resolve_device
from .patching import Ablation
from .plugins import registry
from .runs import Recorder, SourceRun, find_run, new_run_id, read_scores, write_scores
from .tasks import Task, TaskData, prepare
from .tracking import (
    TrackingError,
    _safe_name,
    parent_run_id,
    peak_memory_mb,
    reset_peak_memory,
    run_context,
)

__all__ = [
    "BUDGETS",
    "DiscoveryResult",
    "EvaluationResult",
    "discover",
    "evaluate_scores",
    "load_task",
]


@dataclass
class DiscoveryResult:
    circuit: nx.MultiDiGraph
    scores: torch.Tensor
    graph: Graph
    faithfulness: Faithfulness
    params: dict
    timings: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    out_dir: Path | None = None
    curve: Curve | None = None
    run_id: str | None = None  # the MLflow run id (None when not tracked)
    tracking_uri: str | None = None
    tracking_error: str | None = None  # set when the results could not all be logged
    ground_truth: dict | None = None  # ROC AUC against the model's ground truth, if it has one

    def summary(self) -> str:
        f = self.faithfulness
        lines = [
            f"model {self.params['model']} | task {self.params['task']} | method "
            f"{self.params['method']} | metric {self.params['metric']} | ablation "
            f"{self.params['ablation']}",
            f"circuit: {self.circuit.number_of_edges()} of {self.graph.n_edges} edges, "
            f"{self.circuit.number_of_nodes()} nodes",
            f"faithfulness: {f.normalized:.3f} normalized (metric: circuit {f.circuit:.4g}, "
            f"full model {f.full:.4g}, empty circuit {f.empty:.4g})",
        ]
        if self.curve is not None:
            lines.append(f"curve: CPR {self.curve.cpr:.3f} (higher is better), "
                         f"CMD {self.curve.cmd:.3f} (lower is better)")
        if self.ground_truth is not None:
            gt = self.ground_truth
            lines.append(f"ground truth: edge ROC AUC {gt['edge_roc_auc']:.3f}, node ROC AUC "
                         f"{gt['node_roc_auc']:.3f} ({gt['gt_edges']} edges)")
        lines.append(f"time: {self.timings.get('total_s', float('nan')):.2f}s "
                     f"(scoring {self.timings.get('scoring_s', float('nan')):.2f}s)")
        if self.run_id is not None:
            lines.append(f"MLflow run {self.run_id} in {self.tracking_uri}")
        if self.out_dir is not None:
            lines.append(f"written to {self.out_dir}/")
        return "\n".join(lines)


@dataclass
class EvaluationResult:
    """The faithfulness curve of saved scores (:func:`evaluate_scores`)."""

    curve: Curve
    params: dict
    source: str
    timings: dict = field(default_factory=dict)
    out_dir: Path | None = None
    run_id: str | None = None
    tracking_uri: str | None = None
    tracking_error: str | None = None
    warnings: list[str] = field(default_factory=list)
    ground_truth: dict | None = None  # ROC AUC against a ground-truth circuit, if one was given

    def summary(self) -> str:
        p = self.params
        lines = [f"scores of {self.source}",
                 f"model {p['model']} | task {p['task']} | metric {p['metric']} | ablation "
                 f"{p['ablation']} | {p['n_examples']} examples", self.curve.table(),
                 f"time: {self.timings.get('total_s', float('nan')):.2f}s"]
        if self.ground_truth is not None:
            gt = self.ground_truth
            lines.append(f"ground truth {gt['ground_truth']}: edge ROC AUC "
                         f"{gt['edge_roc_auc']:.3f}, node ROC AUC {gt['node_roc_auc']:.3f} "
                         f"({gt['gt_edges']} edges)")
        lines += [f"warning: {w}" for w in self.warnings]
        if self.run_id is not None:
            lines.append(f"MLflow run {self.run_id} in {self.tracking_uri}")
        if self.out_dir is not None:
            lines.append(f"written to {self.out_dir}/")
        return "\n".join(lines)


def load_task(task: str | Task) -> Task:
    """A registered task by name, a Task object, or (via plugins) a data file path."""
    if isinstance(task, Task):
        return task
    reg = registry()
    if task in reg.tasks:
        return reg.tasks[task]
    if Path(task).suffix:  # looks like a file: let the plugins read it
        from .plugins import plugin_manager

        t = plugin_manager().hook.acdc_task_from_path(path=str(task))
        if t is not None:
            return t
        if not Path(task).exists():
            raise AcdcError(f"task file {task!r} does not exist")
    raise UnknownNameError("task", str(task), list(reg.tasks))


def _task_ref(task: str | Task, task_obj: Task) -> str:
    """How to name the task again later: a registered name, or the data file's absolute path."""
    if isinstance(task, str) and task not in registry().tasks and Path(task).exists():
        return str(Path(task).resolve())
    return task_obj.name


def _versions() -> dict:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "acdc-engine": __version__}
    for pkg in ("torch", "transformers", "nnsight", "networkx", "mlflow"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def _setup(model_id, task_obj: Task, metric_obj, abl: Ablation, n_examples, batch_size, seed,
           device, dtype):
    """Load the model and the task data; batches ready for scoring and evaluation."""
    torch.manual_seed(seed)
    lm = load_model(model_id, device=device, dtype=dtype)
    rows = task_obj.rows(n_examples or task_obj.default_n, seed)
    data: TaskData = prepare(task_obj, lm.tokenizer, rows)
    batches = make_batches(lm, data, metric_obj, batch_size)
    abl.fit(lm.adapter, batches)
    return lm, data, batches


def _model_params(lm: LoadedModel, data: TaskData) -> dict:
    return {"model": lm.id, "model_revision": lm.revision, "weights_hash": lm.weights_hash,
            "family": lm.family, "data_hash": data.data_hash, "n_examples": len(data),
            "device": str(lm.device), "dtype": str(lm.dtype).replace("torch.", "")}


def _version_params() -> dict:
    return {f"version.{k}": v for k, v in _versions().items()}


def _renderer(name: str):
    """``acdc_engine.render.<name>``, or None when the module is absent (or broken: warned)."""
    try:
        from . import render
    except ModuleNotFoundError as e:
        if e.name in ("acdc_engine.render", "render"):
            return None
        print(f"warning: cannot draw pictures: {e}", file=sys.stderr)
        return None
    except Exception as e:  # a broken renderer must not cost the run
        print(f"warning: cannot draw pictures: {type(e).__name__}: {e}", file=sys.stderr)
        return None
    return getattr(render, name, None)


def _render(G: nx.MultiDiGraph, out: Path | None, graph: Graph) -> list[Path]:
    """circuit.svg/.png/.html through acdc_engine.render, when it is there."""
    if out is None or (render_circuit := _renderer("render_circuit")) is None:
        return []
    try:
        return list(render_circuit(G, out, graph=graph) or [])
    except Exception as e:  # a picture must not cost the run
        print(f"warning: could not render the circuit: {type(e).__name__}: {e}", file=sys.stderr)
        return []


def _plot_curve(curve: Curve, path: Path | None, title: str = "") -> Path | None:
    """The curve's picture: normalized faithfulness against the % of edges kept."""
    if path is None or (plot_curve := _renderer("plot_curve")) is None:
        return None
    title = f"{title}  CPR {curve.cpr:.3f}  CMD {curve.cmd:.3f}".strip()
    try:
        plot_curve([100 * x for x in curve.fractions], list(curve.normalized), path, title=title)
        return path
    except Exception as e:
        print(f"warning: could not plot the curve: {type(e).__name__}: {e}", file=sys.stderr)
        return None


def _record_curve(rec: Recorder, curve: Curve, title: str | None = "") -> None:
    """curve.tsv and curve.png (not when ``title`` is None) in the run directory; the curve as
    an MLflow metric series ``curve_faithfulness``, step = the budget in per mille of edges."""
    rec.record["curve"] = curve.as_dict()
    if (p := rec.path("curve.tsv")) is not None:
        curve.write_tsv(p)
        if title is not None:
            _plot_curve(curve, rec.path("curve.png"), title)
    rec.log_series("curve_faithfulness",
                   {round(b * 10): f for b, f in zip(curve.budgets, curve.normalized)})


def _command(params: dict, settings: dict) -> str:
    """The ``acdc discover`` command line that repeats a run."""
    parts = ["acdc", "discover", "--model", str(params["model"]),
             "--task", str(params.get("task_ref") or params["task"]),
             "--method", str(params["method"]), "--metric", str(params["metric"]),
             "--ablation", str(params["ablation"]), "--examples", str(params["n_examples"]),
             "--batch-size", str(params["batch_size"]), "--seed", str(params["seed"]),
             "--dtype", str(params["dtype"])]
    if params.get("n_edges_requested") is not None:
        parts += ["--edges", str(params["n_edges_requested"])]
    elif params.get("threshold") is not None:
        parts += ["--threshold", str(params["threshold"])]
    else:
        parts += ["--target", str(params["target"])]
    for k, v in settings.items():
        parts += ["--set", f"{k}={v}"]
    return " ".join(parts)


def discover(
    model: str | LoadedModel | None = None,
    task: str | Task = "ioi",
    method: str = "eap-ig",
    *,
    metric: str | None = None,
    ablation: str | None = None,
    n_edges: int | None = None,
    threshold: float | None = None,
    target: float = 0.8,
    n_examples: int | None = None,
    batch_size: int = 32,
    settings: dict | None = None,
    seed: int = 0,
    device=None,
    dtype=None,
    out: str | Path | None = None,
    progress: bool = True,
    track: bool = True,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    nested: bool = False,
    results: str | Path | None = None,
    curve: bool = True,
    budgets=BUDGETS,
    render: bool = True,
) -> DiscoveryResult:
    """Score every edge of ``model`` on ``task`` with ``method`` and return the circuit.

    ``model`` defaults to the task's own model. ``settings`` are the method's options (e.g.
    ``{"ig_steps": 5}`` for EAP-IG, ``{"tau": 0.01}`` for ACDC; unknown keys are an error).

    Outputs: ``out`` is the run directory (circuit.json, edge_scores.tsv, curve.tsv, curve.png,
    the rendered circuit, run.json); without it, ``results`` is a results root and the run goes
    to ``results/<experiment>/<run-id>/`` (the CLI's default); with neither nothing is kept on
    disk (tracked runs use a temporary directory for their artifacts).

    Tracking: ``track`` logs an MLflow run to ``tracking_uri`` (default: ``$MLFLOW_TRACKING_URI``
    or ``sqlite:///results/mlflow.db``) in ``experiment`` (default: the task's name);
    ``nested=True`` makes it a child of the active run (e.g. an optuna sweep's).
    ``curve`` also evaluates the faithfulness curve at ``budgets`` (percent of edges) and its
    CPR/CMD; the default target search evaluates that grid anyway, so it costs nothing extra.
    ``render`` draws circuit.svg/.png/.html and curve.png into the run directory (a second or
    two per run; a sweep may turn it off).
    """
    t0 = time.perf_counter()
    if n_edges is not None and threshold is not None:
        raise AcdcError("give at most one of n_edges and threshold")
    reg = registry()
    method_obj = reg.method(method)
    unknown = set(settings or {}) - set(method_obj.defaults)
    if unknown:
        raise AcdcError(f"method {method!r} has no setting(s) {sorted(unknown)} "
                        f"(its settings: {sorted(method_obj.defaults) or 'none'})")
    settings = {**method_obj.defaults, **(settings or {})}
    task_obj = load_task(task)
    metric_obj = reg.metric(metric or task_obj.default_metric)
    abl = Ablation(ablation or task_obj.default_ablation)
    model_id = model if isinstance(model, (str, LoadedModel)) else task_obj.model
    if model_id is None:
        raise AcdcError(f"task {task_obj.name!r} names no default model; pass a model")
    if experiment is None and not (nested and track and parent_run_id()):
        experiment = task_obj.name
    model_name = model_id.id if isinstance(model_id, LoadedModel) else str(model_id)

    result: DiscoveryResult | None = None
    try:
        with run_context(experiment, f"{method} {Path(model_name).name}", enabled=track,
                         uri=tracking_uri, nested=nested, tags={"acdc.kind": "discover"}) as run:
            run_id = run.run_id or new_run_id(method)
            out_dir = Path(out) if out is not None else (
                Path(results) / _safe_name(run.experiment) / run_id if results is not None
                else None)
            rec = Recorder(run, "discover", out_dir, {"run_id": run_id, "settings": settings,
                                                      "versions": _versions()})
            try:
                result = _discover(
                    rec, t0, model_id, task, task_obj, method, method_obj, metric_obj, abl,
                    settings, n_edges=n_edges, threshold=threshold, target=target,
                    n_examples=n_examples, batch_size=batch_size, seed=seed, device=device,
                    dtype=dtype, progress=progress, curve=curve, budgets=budgets, render=render)
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


def _discover(rec: Recorder, t0, model_id, task, task_obj, method, method_obj, metric_obj, abl,
              settings, *, n_edges, threshold, target, n_examples, batch_size, seed, device,
              dtype, progress, curve, budgets, render) -> DiscoveryResult:
    default_search = n_edges is None and threshold is None
    params = {"task": task_obj.name, "task_ref": _task_ref(task, task_obj), "method": method,
              **settings, "metric": metric_obj.name, "ablation": abl.kind,
              "n_edges_requested": n_edges, "threshold": threshold,
              "target": target if default_search else None, "seed": seed,
              "batch_size": batch_size, "budgets": ",".join(f"{b:g}" for b in budgets)}
    rec.log_params({**params, **_version_params()})
    t_start = time.perf_counter()
    try:
        reset_peak_memory(resolve_device(device))
    except Exception:  # an unusable device is reported by load_model below
        pass
    lm, data, batches = _setup(model_id, task_obj, metric_obj, abl, n_examples, batch_size,
                               seed, device, dtype)
    params.update(_model_params(lm, data))
    rec.log_params(_model_params(lm, data))
    t_load = time.perf_counter()

    output = method_obj.run(lm, batches, metric_obj, abl, settings, progress)
    scores = output.scores
    if lm.device.type == "cuda":
        torch.cuda.synchronize()
    t_score = time.perf_counter()
    g = lm.graph
    if (p := rec.path("edge_scores.tsv")) is not None:
        write_scores(p, g, scores)  # written now: kept if evaluation fails

    keep = None
    if output.keep is not None and default_search:
        keep = prune_dead(g, output.keep)
    elif not default_search:
        keep = prune_dead(g, select(g, scores, n_edges=n_edges, threshold=threshold))
    the_curve = None
    if curve or default_search:
        extra = [] if keep is None else [g.mask_from_edges(keep)]
        the_curve, keeps, extra_values = faithfulness_curve(
            lm, batches, metric_obj, abl, scores, budgets, extra=extra, progress=progress)
        if keep is None:  # the smallest budget reaching the target (else everything)
            i = the_curve.smallest_reaching(target)
            i = len(keeps) - 1 if i is None else i
            keep, value = keeps[i], the_curve.values[i]
        else:
            value = extra_values[0]
        faith = Faithfulness(value, the_curve.full, the_curve.empty)
    else:
        faith = faithfulness(lm, batches, metric_obj, abl, g.mask_from_edges(keep))
    t_eval = time.perf_counter()

    circuit = to_networkx(
        g, scores, keep, **{k: v for k, v in params.items() if v is not None},
        faithfulness=faith.normalized, faithfulness_raw=faith.circuit,
        metric_full=faith.full, metric_empty=faith.empty, versions=json.dumps(_versions()),
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        run_id=rec.run_id or "", cpr=the_curve.cpr if the_curve else None,
        cmd=the_curve.cmd if the_curve else None,
    )
    if circuit.graph.get("cpr") is None:
        circuit.graph.pop("cpr", None)
        circuit.graph.pop("cmd", None)
    timings = {"load_s": t_load - t_start, "scoring_s": t_score - t_load,
               "evaluation_s": t_eval - t_score, "total_s": time.perf_counter() - t0}
    result = DiscoveryResult(circuit, scores, g, faith, params, timings, info=output.info,
                             curve=the_curve)

    if (p := rec.path("circuit.json")) is not None:
        save_circuit(circuit, p)
    if render:
        _render(circuit, rec.dir, g)
    if the_curve is not None:
        _record_curve(rec, the_curve, f"{method} on {task_obj.name}" if render else None)
    metrics = {
        "faithfulness": faith.normalized, "faithfulness_raw": faith.circuit,
        "metric_full": faith.full, "metric_empty": faith.empty,
        "edges": circuit.number_of_edges(), "nodes": circuit.number_of_nodes(),
        "edges_total": g.n_edges, "wall_time_s": timings["total_s"],
        "load_s": timings["load_s"], "scoring_s": timings["scoring_s"],
        "evaluation_s": timings["evaluation_s"], "peak_memory_mb": peak_memory_mb(lm.device),
    }
    if the_curve is not None:
        metrics.update(cpr=the_curve.cpr, cmd=the_curve.cmd)
    metrics.update({f"info.{k}": float(v) for k, v in output.info.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool)})
    result.ground_truth = _record_ground_truth(rec, lm, scores)
    rec.log_metrics(metrics)
    rec.record.update(params=params, faithfulness=faith.as_dict(), timings=timings,
                      n_edges=circuit.number_of_edges(), n_edges_total=g.n_edges,
                      command=_command(params, settings))
    return result


def evaluate_scores(
    scores: str | Path | torch.Tensor,
    *,
    model: str | LoadedModel | None = None,
    task: str | Task | None = None,
    metric: str | None = None,
    ablation: str | None = None,
    n_examples: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    budgets=BUDGETS,
    device=None,
    dtype=None,
    out: str | Path | None = None,
    results: str | Path | None = None,
    progress: bool = True,
    track: bool = True,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    nested: bool = False,
    ground_truth: str | Path | GroundTruth | None = None,
) -> EvaluationResult:
    """The faithfulness curve (and CPR, CMD) of saved edge scores, without rescoring.

    ``scores`` is an ``edge_scores.tsv`` file, a run directory, a run id (a directory under
    ``results/*/`` or an MLflow run), or a tensor (then ``model`` and ``task`` are required).
    Model, task, metric, ablation, examples, batch size and seed default to the source run's
    (from its run.json); the arguments override them. Every budget's circuit is evaluated in
    one pass over the data. Tracked and written like :func:`discover` (``kind`` evaluate).

    ``ground_truth`` (a file or a :class:`~acdc_engine.groundtruth.GroundTruth`; by default the
    model's own, when its plugin ships one) adds the edge and node ROC AUC of the scores,
    logged as the metrics ``edge_roc_auc`` and ``node_roc_auc``.
    """
    t0 = time.perf_counter()
    if ground_truth is not None and not isinstance(ground_truth, GroundTruth):
        ground_truth = load_ground_truth(ground_truth)  # a bad file fails before any work
    if isinstance(scores, torch.Tensor):
        source, src_params, label = None, {}, "a scores tensor"
    else:
        source = find_run(str(scores), uri=tracking_uri,
                          results=Path(results) if results is not None else None)
        src_params, label = source.params, source.where
    model = model or src_params.get("model")
    task = task or src_params.get("task_ref") or src_params.get("task")
    if model is None or task is None:
        raise AcdcError(f"{label} does not say which model and task it scored (no run.json); "
                        "pass --model and --task")
    task_obj = load_task(task)
    reg = registry()
    metric_obj = reg.metric(metric or src_params.get("metric") or task_obj.default_metric)
    abl = Ablation(ablation or src_params.get("ablation") or task_obj.default_ablation)
    n_examples = n_examples or _int(src_params.get("n_examples"))
    batch_size = batch_size or _int(src_params.get("batch_size")) or 32
    seed = seed if seed is not None else (_int(src_params.get("seed")) or 0)
    if experiment is None and not (nested and track and parent_run_id()):
        experiment = task_obj.name
    method = src_params.get("method", "")

    result: EvaluationResult | None = None
    tags = {"acdc.kind": "evaluate"}
    if source is not None and source.run_id:
        tags["acdc.source_run"] = source.run_id
    try:
        with run_context(experiment, f"evaluate {method}".strip(), enabled=track,
                         uri=tracking_uri, nested=nested, tags=tags) as run:
            run_id = run.run_id or new_run_id("evaluate")
            out_dir = Path(out) if out is not None else (
                Path(results) / _safe_name(run.experiment) / run_id if results is not None
                else None)
            rec = Recorder(run, "evaluate", out_dir,
                           {"run_id": run_id, "versions": _versions(),
                            "source": {"ref": None if source is None else source.ref,
                                       "where": label,
                                       "run_id": None if source is None else source.run_id}})
            try:
                result = _evaluate(rec, t0, scores, source, src_params, label, model, task,
                                   task_obj, metric_obj, abl, method, n_examples, batch_size,
                                   seed, budgets, device, dtype, progress, ground_truth)
                result.out_dir = None if rec.temporary else rec.dir
                result.run_id, result.tracking_uri = run.run_id, run.uri
                rec.finish()
            except BaseException as e:
                rec.fail(e)
                raise
    except TrackingError as e:
        if result is None:
            raise
        result.tracking_error = str(e)
        print(f"error: {e}", file=sys.stderr)
    return result


def _record_ground_truth(rec: Recorder, lm: LoadedModel, scores: torch.Tensor,
                         gt: GroundTruth | None = None) -> dict | None:
    """Edge and node ROC AUC of ``scores`` against ``gt`` (default: the model's own ground
    truth, if its plugin ships one), logged and recorded; None when there is no ground truth."""
    gt = gt if gt is not None else ground_truth_for(lm)
    if gt is None:
        return None
    r = evaluate_ground_truth(lm.graph, scores, gt)
    rec.log_params({"ground_truth": gt.source})
    rec.log_metrics({"edge_roc_auc": r["edge_roc_auc"], "node_roc_auc": r["node_roc_auc"]})
    rec.record["ground_truth"] = r
    return r


def _int(v) -> int | None:
    try:
        return None if v in (None, "", "None") else int(v)
    except (TypeError, ValueError):
        return None


def _evaluate(rec: Recorder, t0, scores, source: SourceRun | None, src_params: dict, label,
              model, task, task_obj, metric_obj, abl, method, n_examples, batch_size, seed,
              budgets, device, dtype, progress, gt: GroundTruth | None) -> EvaluationResult:
    params = {"task": task_obj.name, "task_ref": _task_ref(task, task_obj), "method": method,
              "metric": metric_obj.name, "ablation": abl.kind, "seed": seed,
              "batch_size": batch_size, "budgets": ",".join(f"{b:g}" for b in budgets),
              "source": label if source is None or not source.run_id else source.run_id}
    rec.log_params({**params, **_version_params()})
    try:
        reset_peak_memory(resolve_device(device))
    except Exception:
        pass
    lm, data, batches = _setup(model, task_obj, metric_obj, abl, n_examples, batch_size, seed,
                               device, dtype)
    params.update(_model_params(lm, data))
    rec.log_params(_model_params(lm, data))
    g = lm.graph
    if isinstance(scores, torch.Tensor):
        if scores.shape != (g.n_edges,):
            raise AcdcError(f"expected {g.n_edges} scores, one per edge, got {tuple(scores.shape)}")
        values = scores.detach().float().cpu()
    else:
        values = read_scores(source.scores_path, g)
    warn = []
    for key, what in (("weights_hash", "model weights"), ("data_hash", "task data")):
        if src_params.get(key) not in (None, "", params[key]):
            warn.append(f"the {what} differ from the scored run's ({key} {params[key]} vs "
                        f"{src_params[key]})")
    if (p := rec.path("edge_scores.tsv")) is not None:
        write_scores(p, g, values)
    gt_result = _record_ground_truth(rec, lm, values, gt)
    t_load = time.perf_counter()
    curve, _, _ = faithfulness_curve(lm, batches, metric_obj, abl, values, budgets,
                                     progress=progress)
    t_eval = time.perf_counter()
    timings = {"load_s": t_load - t0, "evaluation_s": t_eval - t_load,
               "total_s": time.perf_counter() - t0}
    _record_curve(rec, curve, f"{method or 'scores'} on {task_obj.name}")
    rec.log_metrics({"cpr": curve.cpr, "cmd": curve.cmd, "metric_full": curve.full,
                     "metric_empty": curve.empty, "edges_total": g.n_edges,
                     "wall_time_s": timings["total_s"], "evaluation_s": timings["evaluation_s"],
                     "peak_memory_mb": peak_memory_mb(lm.device)})
    rec.record.update(params=params, timings=timings, warnings=warn)
    return EvaluationResult(curve, params, label, timings, warnings=warn,
                            ground_truth=gt_result)


def write_result(result: DiscoveryResult, out: Path) -> Path:
    """Write a result's circuit.json, edge_scores.tsv, curve.tsv and a short run.json to ``out``
    (discover writes its run directory itself; this is for results made elsewhere)."""
    out.mkdir(parents=True, exist_ok=True)
    save_circuit(result.circuit, out / "circuit.json")
    write_scores(out / "edge_scores.tsv", result.graph, result.scores)
    if result.curve is not None:
        result.curve.write_tsv(out / "curve.tsv")
    run = {"params": result.params, "faithfulness": result.faithfulness.as_dict(),
           "timings": result.timings, "n_edges": result.circuit.number_of_edges(),
           "n_edges_total": result.graph.n_edges, "versions": _versions(),
           "run_id": result.run_id,
           "curve": None if result.curve is None else result.curve.as_dict()}
    (out / "run.json").write_text(json.dumps(run, indent=2, default=str))
    return out
