"""``evaluate_scores()``: the faithfulness curve (and CPR, CMD) of saved scores, no rescoring.

    from acdc_engine import evaluate_scores
    result = evaluate_scores("RUN_ID")            # or a run directory / edge_scores.tsv
    print(result.curve.table())

Model, task, metric, ablation, examples, batch size and seed default to the source run's (from
its run.json); options override them. Every budget's circuit is evaluated in one pass over the
data. Recorded like :func:`~acdc_engine.api.discover` (MLflow tag ``acdc.kind`` evaluate).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import AcdcError
from ..evaluation.curves import faithfulness_curve
from ..evaluation.groundtruth import GroundTruth, ground_truth_for, load_ground_truth
from ..models import LoadedModel, resolve_device, resolve_dtype
from ..patching import Ablation
from ..plugins import registry
from ..records import Recorder, find_run, parent_run_id, read_scores
from ..resources import set_threads
from .config import DiscoverConfig, RecordConfig, split_options
from .discover import recorded_setup
from .pipeline import ground_truth_aucs
from .recording import record_evaluation, recorded
from .results import EvaluationResult, faithfulness_warnings
from .setup import load_task, task_ref

__all__ = ["evaluate_scores", "EvaluateConfig"]


@dataclass
class EvaluateConfig(DiscoverConfig):
    """DiscoverConfig's fields (None = the source run's), and ``model``/``task``/
    ``ground_truth`` (a file or :class:`GroundTruth`; default: the model's own, if any)."""

    model: str | LoadedModel | None = None
    task: str | None = None
    batch_size: int | None = None
    seed: int | None = None
    ground_truth: str | Path | GroundTruth | None = None


def _int(v) -> int | None:
    try:
        return None if v in (None, "", "None") else int(v)
    except (TypeError, ValueError):
        return None


def evaluate_scores(
    scores: str | Path | torch.Tensor,
    *,
    config: EvaluateConfig | None = None,
    record: RecordConfig | None = None,
    **options,
) -> EvaluationResult:
    """The faithfulness curve of ``scores``: an ``edge_scores.tsv`` file, a run directory, a run
    id (a directory under ``results/*/`` or an MLflow run), or a tensor (then ``model`` and
    ``task`` are required). ``options`` are fields of EvaluateConfig or RecordConfig."""
    t0 = time.perf_counter()
    cfg, rc = split_options(options, config, record, EvaluateConfig)
    gt = cfg.ground_truth
    if gt is not None and not isinstance(gt, GroundTruth):
        gt = load_ground_truth(gt)  # a bad file fails before any work
    if isinstance(scores, torch.Tensor):
        source, src, label = None, {}, "a scores tensor"
    else:
        source = find_run(str(scores), uri=rc.tracking_uri,
                          results=Path(rc.results) if rc.results is not None else None)
        src, label = source.params, source.where
    model = cfg.model or src.get("model")
    task = cfg.task or src.get("task_ref") or src.get("task")
    if model is None or task is None:
        raise AcdcError(f"{label} does not say which model and task it scored (no run.json); "
                        "pass --model and --task")
    task_obj = load_task(task)
    metric_obj = registry().metric(cfg.metric or src.get("metric") or task_obj.default_metric)
    abl = Ablation(cfg.ablation or src.get("ablation") or task_obj.default_ablation)
    cfg.n_examples = cfg.n_examples or _int(src.get("n_examples"))
    cfg.batch_size = cfg.batch_size or _int(src.get("batch_size")) or 32
    cfg.seed = cfg.seed if cfg.seed is not None else (_int(src.get("seed")) or 0)
    cfg.positions = cfg.positions or src.get("position_split") or None  # the scored split
    cfg.check()
    resolve_device(cfg.device), resolve_dtype(cfg.dtype)
    set_threads(cfg.threads)
    experiment = rc.experiment
    if experiment is None and not (rc.nested and rc.track and parent_run_id()):
        experiment = task_obj.name
    method = src.get("method", "")
    params = {"task": task_obj.name, "task_ref": task_ref(task, task_obj), "method": method,
              "metric": metric_obj.name, "ablation": abl.kind, "seed": cfg.seed,
              "batch_size": cfg.batch_size, "budgets": ",".join(f"{b:g}" for b in cfg.budgets),
              "position_split": cfg.positions,
              "source": label if source is None or not source.run_id else source.run_id}

    def work(rec: Recorder) -> EvaluationResult:
        lm, problem = recorded_setup(rec, params, model, task_obj, metric_obj, abl.kind, cfg)
        g = problem.graph  # split by position when the scored run was
        if isinstance(scores, torch.Tensor):
            if scores.shape != (g.n_edges,):
                raise AcdcError(f"expected {g.n_edges} scores, one per edge, got "
                                f"{tuple(scores.shape)}")
            values = scores.detach().float().cpu()
        else:
            values = read_scores(source.scores_path, g)
        warn = [f"the {what} differ from the scored run's ({key} {params[key]} vs {src[key]})"
                for key, what in (("weights_hash", "model weights"), ("data_hash", "task data"))
                if src.get(key) not in (None, "", params[key])]
        t_load = time.perf_counter()
        curve, _, _ = faithfulness_curve(problem, values, cfg.budgets, progress=rc.progress)
        t_eval = time.perf_counter()
        warn += faithfulness_warnings(problem, curve.full, curve.empty, curve=curve)
        timings = {"load_s": t_load - t0, "evaluation_s": t_eval - t_load,
                   "total_s": time.perf_counter() - t0}
        result = EvaluationResult(curve=curve, params=params, source=label, timings=timings,
                                  warnings=warn, ground_truth=ground_truth_aucs(
                                      problem, values, gt if gt is not None
                                      else ground_truth_for(lm)))
        record_evaluation(rec, result, g, values, rc.render)
        return result

    tags = {"acdc.source_run": source.run_id} if source is not None and source.run_id else {}
    return recorded("evaluate", f"evaluate {method}".strip(), rc, experiment,
                    {"source": {"ref": None if source is None else source.ref, "where": label,
                                "run_id": None if source is None else source.run_id}},
                    tags, work)
