"""``discover()``: the whole job in one call: model + task -> scored circuit with faithfulness.

    from acdc_engine import discover
    result = discover(task="ioi", method="eap-ig", n_edges=60)
    result.circuit            # Circuit; result.circuit.nx is its networkx MultiDiGraph
    result.faithfulness       # Faithfulness(circuit, full, empty).normalized
    result.curve.cpr          # MIB's area under the faithfulness curve
    result.run_id             # the MLflow run it was logged to

Options are the fields of :class:`~acdc_engine.api.config.DiscoverConfig` (what to compute) and
:class:`~acdc_engine.api.config.RecordConfig` (where it goes), as keywords or as the two
objects. Every option, name and the output location are checked before the model is loaded.
The CLI's ``acdc discover`` is a thin wrapper.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from ..circuit import Circuit
from ..distributed import SINGLE, Ranks
from ..errors import AcdcError
from ..evaluation.groundtruth import ground_truth_for
from .selected import Member, SelectedMethod
from ..models import LoadedModel, resolve_device, resolve_dtype
from ..patching import Ablation
from ..plugins import registry
from ..problem import Problem
from ..records import Recorder, parent_run_id, write_scores
from ..resources import reset_peak_memory, set_threads
from ..tasks import Task
from .config import DiscoverConfig, RecordConfig, split_options
from ..evaluation.levels import nodes_kept
from .pipeline import find_circuit, ground_truth_aucs
from .recording import model_params, record_discovery, recorded, version_params
from .results import DiscoveryResult, faithfulness_warnings
from .setup import build_problem, load_model, load_task, task_ref

__all__ = ["discover"]


def discover(
    model: str | LoadedModel | None = None,
    task: str | Task = "ioi",
    method: str | list[str] = "eap-ig",
    *,
    config: DiscoverConfig | None = None,
    record: RecordConfig | None = None,
    ranks: Ranks = SINGLE,
    **options,
) -> DiscoveryResult:
    """Score every edge of ``model`` on ``task`` with ``method`` and return the circuit.

    ``model`` defaults to the task's own model. ``options`` are fields of DiscoverConfig
    (``n_edges``, ``threshold``, ``target``, ``metric``, ``ablation``, ``settings``,
    ``n_examples``, ``batch_size``, ``seed``, ``device``, ``dtype``, ``threads``, ``budgets``,
    ``curve``, ``selection``, ``ensemble``, ``normalisation``, ``bootstrap``,
    ``min_frequency``, ``ilp_time_limit``) or RecordConfig (``out``, ``results``, ``track``,
    ``tracking_uri``, ``experiment``, ``nested``, ``render``, ``progress``); see those classes.
    ``method`` may be several methods (a list, or names separated by commas): their normalised
    scores are combined by ``ensemble`` (:mod:`acdc_engine.evaluation.selection`).
    ``ranks``: this process's place in a data-parallel job (:mod:`acdc_engine.distributed`):
    the examples are sharded, the sums all-reduced, and rank 0 alone records the run.
    """
    t0 = time.perf_counter()
    cfg, rc = split_options(options, config, record)
    cfg.check()
    reg = registry()
    names = method_names(method)
    method = ",".join(names)
    members = ensemble_members(reg, names, cfg.settings)
    method_obj, settings = members[0].method, members[0].settings
    selection = cfg.selection_used
    if cfg.level == "neuron" and names != ["eap"]:
        raise AcdcError("--level neuron scores heads and MLP neurons by attribution patching at "
                        "the clean run: use --method eap")
    if cfg.stability and (len(members) > 1 or selection in ("ilp", "positive", "bootstrap")):
        raise AcdcError("stability rediscovers top-n circuits of one method; run it without "
                        "an ensemble and with selection topk, threshold or target")
    rc = check_ranks(ranks, names, cfg, rc, selection)
    task_obj = load_task(task)
    metric_obj = reg.metric(cfg.metric or task_obj.default_metric)
    ablation = Ablation(cfg.ablation or task_obj.default_ablation)
    model_id = model if isinstance(model, (str, LoadedModel)) else task_obj.model
    if model_id is None:
        raise AcdcError(f"task {task_obj.name!r} names no default model; pass a model")
    resolve_device(cfg.device), resolve_dtype(cfg.dtype)  # bad values fail before any work
    set_threads(cfg.threads)
    experiment = rc.experiment
    if experiment is None and not (rc.nested and rc.track and parent_run_id()):
        experiment = task_obj.name
    name = model_id.id if isinstance(model_id, LoadedModel) else str(model_id)
    settings_d = {k: v for m in members for k, v in dataclasses.asdict(m.settings).items()}
    params = {"task": task_obj.name, "task_ref": task_ref(task, task_obj), "method": method,
              **settings_d, "metric": metric_obj.name, "ablation": ablation.kind,
              "n_edges_requested": cfg.n_edges, "threshold": cfg.threshold,
              "target": cfg.target if cfg.default_search else None, "seed": cfg.seed,
              "batch_size": cfg.batch_size, "budgets": ",".join(f"{b:g}" for b in cfg.budgets),
              "position_split": cfg.positions or None, "level": cfg.level,
              "n_nodes_requested": cfg.n_nodes, **selection_params(cfg, selection,
                                                                           len(members))}
    if ranks.active:
        params["ranks"] = ranks.world

    def work(rec: Recorder) -> DiscoveryResult:
        t_start = time.perf_counter()
        lm, problem = recorded_setup(rec, params, model_id, task_obj, metric_obj,
                                     ablation.kind, cfg)
        problem = problem.shard(ranks)  # this rank's examples (one process: all of them)
        t_load = time.perf_counter()
        def on_scores(s):  # the scores are kept (elsewhere, if need be) before anything else
            rec.write("edge_scores.tsv", lambda p: write_scores(p, problem.graph, s, keep=False))

        if len(members) == 1 and selection in ("topk", "threshold", "target"):
            out = find_circuit(problem, method_obj, settings, cfg, rc.progress, on_scores)
        else:  # an ensemble, or a selection the pipeline does not make itself
            sm = SelectedMethod(members, selection, cfg)
            own = dataclasses.replace(cfg, n_edges=None, threshold=None) \
                if selection in ("ilp", "positive", "bootstrap") else cfg
            out = find_circuit(problem, sm, None, own, rc.progress, on_scores)
            if sm.frequency is not None:  # bootstrap: how often each edge was chosen
                rec.write("bootstrap_frequency.tsv", lambda p: write_scores(
                    p, problem.graph, sm.frequency.float(), keep=False))
                rec.record["bootstrap"] = sm.stability.as_dict()
        if "prune_metric" in out.info:  # defaulted for this model (pipeline.default_settings)
            settings_d["prune_metric"] = params["prune_metric"] = out.info["prune_metric"]
            rec.log_params({"prune_metric_used": out.info["prune_metric"]})
        attrs = {k: v for k, v in params.items() if v is not None}
        faith = out.faithfulness
        attrs.update(faithfulness=faith.normalized, faithfulness_raw=faith.circuit,
                     metric_full=faith.full, metric_empty=faith.empty,
                     metric_higher_is_better=metric_obj.higher_is_better)
        if out.curve is not None:
            attrs.update(cpr=out.curve.cpr, cmd=out.curve.cmd)
        if cfg.level == "node":
            attrs["n_nodes_kept"] = nodes_kept(problem.graph, out.keep)
        timings = {"load_s": t_load - t_start, **out.timings,
                   "total_s": time.perf_counter() - t0}
        # the per-example noise check reads one shard's examples only: left out with ranks
        noisy = None if ranks.active else problem
        warnings = [*faithfulness_warnings(noisy, faith.full, faith.empty, faith.normalized),
                    *[w for w in [out.info.get("warning")] if w]]
        result = DiscoveryResult(
            circuit=Circuit(problem.graph, out.keep, out.scores, attrs), scores=out.scores,
            faithfulness=faith, params=params, timings=timings, info=out.info,
            curve=out.curve, warnings=warnings,
            ground_truth=ground_truth_aucs(problem, out.scores, ground_truth_for(lm)))
        record_discovery(rec, result, settings_d, rc.render)
        return result

    if cfg.stability and rc.out is None and rc.results is None and not rc.track:
        raise AcdcError("stability needs a recorded run: give out= or results=, or track it")
    result = recorded("discover", f"{method} {Path(name).name}", rc, experiment,
                      {"settings": settings_d}, {}, work)
    if cfg.stability:  # rediscover on random halves: intervals, stability, redundancy
        from .evidence import stability_for_run

        result.stability = stability_for_run(
            str(result.out_dir or result.run_id), n=cfg.stability, uri=rc.tracking_uri,
            device=cfg.device)[0]
    return result


RANKED_METHODS = ("eap", "eap-ig", "acdc", "acdc-guided", "edge-pruning", "ugs")
"""The methods whose sums over examples are all-reduced over the ranks of a job (mask
optimization: its gradients, each step on every rank's next batch)."""


def check_ranks(ranks: Ranks, names: list[str], cfg: DiscoverConfig, rc: RecordConfig,
                selection: str) -> RecordConfig:
    """Refuse what a job of several ranks cannot compute (one line naming it); the record
    config of this rank: rank 0's is ``rc``, the others record nothing and show no bars."""
    if not ranks.active:
        return rc
    what = next((f"method {n!r}" for n in names if n not in RANKED_METHODS), None) or (
        f"--level {cfg.level}" if cfg.level != "edge" else
        "--stability" if cfg.stability else
        f"--selection {selection}" if selection not in ("topk", "threshold", "target")
        else None)
    if what is not None:
        raise AcdcError(f"{what} does not run on several ranks (data-parallel methods: "
                        f"{', '.join(RANKED_METHODS)}, at edge level); use --workers 1")
    if ranks.main:
        return rc
    return dataclasses.replace(rc, out=None, results=None, track=False, render=False,
                               progress=False)


def method_names(method: str | list[str] | tuple[str, ...]) -> list[str]:
    """The method names of ``method``: one name, names separated by commas, or a list."""
    items = method.split(",") if isinstance(method, str) else list(method)
    names = [str(m).strip() for m in items if str(m).strip()]
    if not names:
        raise AcdcError("name at least one method")
    if len(set(names)) != len(names):
        raise AcdcError(f"a method is named twice: {','.join(names)}")
    return names


def ensemble_members(reg, names: list[str], given: dict | None) -> list[Member]:
    """Each named method with its settings: of ``given``, those the method has (a setting
    no named method has is an error naming it)."""
    given = dict(given or {})
    methods = [reg.method(n) for n in names]
    if len(methods) == 1:
        return [Member(methods[0], methods[0].configure(given), given)]
    known = {f.name for m in methods for f in m.fields()}
    unknown = sorted(set(given) - known)
    if unknown:
        raise AcdcError(f"no method of the ensemble has setting(s) {unknown}")
    out = []
    for m in methods:
        mine = {k: v for k, v in given.items() if k in {f.name for f in m.fields()}}
        out.append(Member(m, m.configure(mine), mine))
    return out


def selection_params(cfg: DiscoverConfig, selection: str, n_methods: int) -> dict:
    """What the run records about its selection (None where it does not apply)."""
    return {"selection": selection,
            "ensemble": cfg.ensemble if n_methods > 1 else None,
            "normalisation": cfg.normalisation if n_methods > 1 else None,
            "bootstrap": cfg.bootstrap if selection == "bootstrap" else None,
            "min_frequency": cfg.min_frequency if selection == "bootstrap" else None,
            "ilp_time_limit": cfg.ilp_time_limit if selection == "ilp" else None}


def recorded_setup(rec: Recorder, params: dict, model, task_obj: Task, metric, ablation: str,
                   cfg: DiscoverConfig) -> tuple[LoadedModel, Problem]:
    """Log ``params``, load the model, build the problem and log what identifies them (weights
    and data hashes, device, dtype); ``params`` is updated in place."""
    rec.log_params({**params, **version_params()})
    try:
        # a device_map (dict) names every device the model will be spread over
        dev = cfg.device if isinstance(cfg.device, dict) else resolve_device(cfg.device)
        reset_peak_memory(dev)
    except Exception:  # an unusable device is reported by load_model below
        pass
    lm = load_model(model, device=cfg.device, dtype=cfg.dtype, revision=cfg.revision)
    problem, data = build_problem(lm, task_obj, metric=metric, ablation=ablation,
                                  n_examples=cfg.n_examples, batch_size=cfg.batch_size,
                                  seed=cfg.seed, positions=cfg.positions)
    notes = {f"task.{k}": str(v) for k, v in data.meta.get("notes", {}).items()}
    if problem.positions is not None:
        notes["positions_groups"] = ",".join(problem.positions.names)
    params.update(model_params(lm, data), **notes)
    rec.log_params({**model_params(lm, data), **notes})
    return lm, problem
