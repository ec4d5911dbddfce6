"""optuna search over discovery methods and their settings, for two objectives at once.

    from acdc_engine.api import sweep
    result = sweep(task="ioi", n_trials=20)          # the shipped tiny-ioi model
    print(result.table())                            # the Pareto front

Each trial picks a method and its settings, runs :func:`~acdc_engine.api.discover` and reports
two objectives: normalized faithfulness (maximized) and the circuit's edge count (minimized).
The search space:

    method      one of ``methods`` (default eap, eap-ig, acdc; any registered method)
    ablation    one of ``ablations`` (default corrupted, mean, zero)
    settings    every searchable setting the method declares (``setting(..., search=...)``,
                :meth:`~acdc_engine.scoring.Method.suggest`): e.g. ACDC's ``tau`` (log-uniform
                in ``tau_range``, default 1e-4 .. 1e-1, which replaces its declared range),
                EAP-IG's ``ig_steps`` (1 .. 10)
    n_edges     methods that do not select their circuit (the edge budget): log-uniform
                integer in 1 .. all edges

Storage is any optuna storage URL (default ``sqlite:///<results>/optuna.db``; a PostgreSQL URL
lets many machines share one study; ``memory`` keeps it in this process). A study is found
again by name in its storage (``load_if_exists``), so re-running a sweep continues it:
``n_trials`` is the study's total of finished trials, not a number to add. A trial that
raises is recorded FAILED (its MLflow run too) and the study goes on.

Interrupted and lost trials are redone, not counted: a trial stopped by Ctrl-C or SIGTERM is
marked ``interrupted`` and queued again with the same parameters (the next run of the sweep, or
another worker, redoes it); on a database storage the workers send optuna heartbeats
(``heartbeat`` seconds; ``grace`` without one marks a trial failed), so the trial of a worker
that was killed outright is marked FAIL and queued again (``RetryFailedTrialCallback``).
Counted toward ``n_trials``: COMPLETE trials and FAIL trials that were not retried. Many
workers (processes or machines) can run ``sweep`` on one study at once: each starts a trial
only while the study needs one, and a trial started in a race beyond ``n_trials`` is PRUNED at
once (marked ``surplus``), so the study ends with exactly ``n_trials`` counted trials. See
docs/scale.md.

Tracking: one parent MLflow run per sweep, each trial's discovery a nested child run (tagged
with the study and trial number); the Pareto front is written to
``<results>/sweeps/<study>/pareto.json`` (with ``trials.json``, and every trial's circuit under
``trial-<n>/``) and logged as the parent's artifacts.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AcdcError

__all__ = ["SweepConfig", "SweepResult", "sweep", "default_storage", "DEFAULT_METHODS",
           "DEFAULT_ABLATIONS"]

DEFAULT_METHODS = ("eap", "eap-ig", "acdc")
"""The methods a sweep searches over when none are named."""
DEFAULT_ABLATIONS = ("corrupted", "mean", "zero")
"""The ablations a sweep searches over when none are named."""


@dataclass
class SweepConfig:
    """A sweep's options (each can also be given to :func:`sweep` as a keyword).

    ``storage``/``study_name``: where the study lives and its name (default ``TASK-MODEL``);
    ``methods``/``ablations``: what the trials choose from; ``tau_range``: the range of a
    method's ``tau`` setting (ACDC's threshold); ``n_examples`` .. ``threads``: as for
    :func:`~acdc_engine.api.discover`; ``track``/``tracking_uri``/``experiment``: the MLflow
    parent run (experiment default ``sweep-<task>``); ``results``: the results root (default
    ``$ACDC_RESULTS`` or ``./results``); ``timeout``: stop starting trials after this many
    seconds; ``verbose``: print one line per trial; ``heartbeat``/``grace``: optuna heartbeat
    interval and grace period in seconds on database storages (grace default 4 heartbeats;
    heartbeat None: no heartbeats, a killed worker's trial stays RUNNING)."""

    storage: str | None = None
    study_name: str | None = None
    methods: tuple[str, ...] = DEFAULT_METHODS
    ablations: tuple[str, ...] = DEFAULT_ABLATIONS
    tau_range: tuple[float, float] = (1e-4, 1e-1)
    n_examples: int | None = None
    batch_size: int = 32
    seed: int = 0
    device: str | None = None
    dtype: str | None = None
    threads: int | None = None
    track: bool = True
    tracking_uri: str | None = None
    experiment: str | None = None
    results: str | Path | None = None
    timeout: float | None = None
    verbose: bool = True
    heartbeat: float | None = 30.0
    grace: float | None = None

    def check(self) -> SweepConfig:
        """Refuse unknown methods and ablations and a bad tau range now, not in every trial."""
        from ..patching import Ablation
        from ..plugins import registry

        reg = registry()
        for m in self.methods:
            reg.method(m)
        for a in self.ablations:
            Ablation(a)
        lo, hi = self.tau_range
        if not 0 < lo <= hi:
            raise AcdcError(f"tau range must satisfy 0 < low <= high, got {self.tau_range}")
        for name in ("heartbeat", "grace"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise AcdcError(f"{name} must be a positive number of seconds, got {v}")
        return self


def _optuna():
    """optuna (the ``search`` extra), quiet."""
    from ..extras import require

    optuna = require("optuna", "search", "acdc sweep")
    # ERROR: optuna's own "Trial N failed" warning carries a traceback (also on Ctrl-C); the
    # objective prints one line per failed trial instead
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna


def default_storage(results: str | Path | None = None) -> str:
    """``sqlite:///<results>/optuna.db`` (absolute), results defaulting to ``$ACDC_RESULTS``."""
    from ..records import results_dir

    root = Path(results).resolve() if results is not None else results_dir()
    return f"sqlite:///{root / 'optuna.db'}"


def _redact(url: str) -> str:
    """The storage URL without a password (for logs)."""
    return re.sub(r"(//[^:/@]+:)[^@]*@", r"\1***@", url)


def _storage(url: str | None, results) -> str | None:
    if url in ("memory", ":memory:"):
        return None
    url = url or default_storage(results)
    if url.startswith("sqlite:///"):
        path = Path(url[len("sqlite:///"):].split("?", 1)[0])
        if str(path) and str(path) != ":memory:":
            path.parent.mkdir(parents=True, exist_ok=True)
    return url


@dataclass
class SweepResult:
    """A finished sweep: its optuna study (name and storage), the Pareto front of faithfulness
    against circuit size (one row per Pareto-optimal trial) and where its files went."""
    study_name: str
    storage: str
    pareto: list[dict]  # one row per Pareto-optimal trial, fewest edges first
    trials: list[dict]  # every trial of the study
    out_dir: Path | None = None
    run_id: str | None = None
    ran: int = 0  # trials run by this call
    notes: list[str] = field(default_factory=list)

    def table(self) -> str:
        """The Pareto front as a fixed-width table."""
        head = f"{'trial':>5}  {'method':<12} {'ablation':<9} {'settings':<26} " \
               f"{'faithful':>8} {'edges':>6}  run"
        lines = [head, "-" * len(head)]
        for r in self.pareto:
            settings = " ".join(f"{k}={_fmt(v)}" for k, v in r["settings"].items())
            lines.append(f"{r['trial']:>5}  {r['method']:<12} {r['ablation']:<9} "
                         f"{settings:<26} {r['faithfulness']:8.3f} {r['edges']:6d}  "
                         f"{r.get('run_id') or '-'}")
        return "\n".join(lines)

    def summary(self) -> str:
        done = sum(t["state"] == "COMPLETE" for t in self.trials)
        stopped = sum(t["state"] == "FAIL" and t["interrupted"] for t in self.trials)
        failed = sum(t["state"] == "FAIL" for t in self.trials) - stopped
        extra = f", {stopped} interrupted and redone" if stopped else ""
        lines = [f"study {self.study_name!r} in {_redact(self.storage)}: {len(self.trials)} "
                 f"trials ({done} complete, {failed} failed{extra}; {self.ran} run now)",
                 *self.notes,
                 f"Pareto front (normalized faithfulness up, edges down): "
                 f"{len(self.pareto)} trial(s)", self.table()]
        if self.out_dir is not None:
            lines.append(f"written to {self.out_dir}/pareto.json")
        if self.run_id is not None:
            lines.append(f"MLflow parent run {self.run_id}")
        return "\n".join(lines)


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _suggest(trial, cfg: SweepConfig, n_total: int):
    """(method, ablation, settings, n_edges) for one trial: the method's declared search space
    (``tau`` over ``cfg.tau_range``), and an edge budget unless the method selects its circuit."""
    from ..plugins import registry

    method = trial.suggest_categorical("method", list(cfg.methods))
    ablation = trial.suggest_categorical("ablation", list(cfg.ablations))
    method_obj = registry().method(method)
    settings = method_obj.suggest(trial, overrides={"tau": cfg.tau_range})
    n_edges = None
    if not method_obj.selects_circuit:
        n_edges = trial.suggest_int("n_edges", 1, n_total, log=True)
    return method, ablation, settings, n_edges


def _trial_row(t) -> dict:
    p = dict(t.params)
    method, ablation = p.pop("method", "?"), p.pop("ablation", "?")
    values = t.values or [float("nan"), float("nan")]
    return {"trial": t.number, "state": t.state.name, "method": method, "ablation": ablation,
            "settings": p, "faithfulness": values[0],
            "edges": int(values[1]) if values[1] == values[1] else None,
            "run_id": t.user_attrs.get("run_id"), "out": t.user_attrs.get("out"),
            "error": t.user_attrs.get("error"), "seconds": t.user_attrs.get("seconds"),
            "interrupted": bool(t.user_attrs.get("interrupted"))}


@dataclass
class _Objective:
    """One trial: suggest, run discover() into ``out_dir/trial-<n>``, tag the child run."""

    lm: object  # the LoadedModel every trial shares
    task: object  # the Task
    cfg: SweepConfig
    out_dir: Path
    study: str
    parent: object = None  # the parent RunHandle, set once it is open
    ran: int = 0

    n_trials: int = 0

    def __call__(self, trial):
        from ..records.studies import prune_surplus
        from .discover import discover

        prune_surplus(trial, self.n_trials)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        self.ran += 1
        cfg = self.cfg
        method, ablation, settings, n_edges = _suggest(trial, cfg, self.lm.graph.n_edges)
        trial_dir = self.out_dir / f"trial-{trial.number}"
        trial.set_user_attr("out", str(trial_dir))
        t0 = time.perf_counter()
        try:
            res = discover(self.lm, self.task, method, settings=settings, ablation=ablation,
                           n_edges=n_edges, n_examples=cfg.n_examples,
                           batch_size=cfg.batch_size, seed=cfg.seed, device=cfg.device,
                           dtype=cfg.dtype, threads=cfg.threads, track=cfg.track,
                           tracking_uri=cfg.tracking_uri, experiment=None, nested=True,
                           out=trial_dir, curve=False, render=False, progress=False)
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM: redone later, not counted
            trial.set_user_attr("interrupted", True)
            raise
        except Exception as e:
            trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:500])
            if cfg.verbose:
                print(f"trial {trial.number}: {method} {settings} {ablation} failed: "
                      f"{type(e).__name__}: {e}", file=sys.stderr)
            raise
        seconds = time.perf_counter() - t0
        faith, edges = res.faithfulness.normalized, res.circuit.number_of_edges()
        trial.set_user_attr("run_id", res.run_id)
        trial.set_user_attr("seconds", seconds)
        self._tag(res.run_id, trial.number)
        if cfg.verbose:
            shown = " ".join(f"{k}={_fmt(v)}" for k, v in
                             {**settings, **({"n_edges": n_edges} if n_edges else {})}.items())
            print(f"trial {trial.number}: {method} {shown} ablation={ablation} -> "
                  f"faithfulness {faith:.3f}, {edges} edges ({seconds:.1f}s)")
        if not math.isfinite(faith):
            trial.set_user_attr("error", "normalized faithfulness is not finite")
            raise AcdcError("normalized faithfulness is not finite (the full model and the "
                            "empty circuit score the same)")
        return faith, edges

    def _tag(self, run_id: str | None, number: int) -> None:
        """Tag the trial's (child) MLflow run with the study and the trial number."""
        from ..records import RunHandle

        p = self.parent
        if run_id is not None and p is not None and p.enabled:
            RunHandle(p.experiment, run_id, uri=p.uri, client=p.client).set_tags(
                {"optuna.study": self.study, "optuna.trial": number})


def sweep(task="ioi", model=None, *, n_trials: int = 20, config: SweepConfig | None = None,
          **options) -> SweepResult:
    """Run (or continue) the multi-objective study; return its Pareto front.

    ``task``/``model`` as for :func:`~acdc_engine.api.discover` (default: the ``ioi`` task and
    its shipped model). ``options`` are :class:`SweepConfig` fields (``storage``,
    ``study_name``, ``methods``, ``ablations``, ``tau_range``, ``n_examples``, ``batch_size``,
    ``seed``, ``device``, ``dtype``, ``threads``, ``track``, ``tracking_uri``, ``experiment``,
    ``results``, ``timeout``, ``verbose``), applied over ``config``.
    """
    from ..records import results_dir, run_context
    from ..records.studies import open_study, requeue_interrupted, work
    from .setup import load_model, load_task

    cfg = _config(config, options)
    optuna = _optuna()
    if n_trials < 0:
        raise AcdcError(f"n_trials must be >= 0, got {n_trials}")
    cfg.check()
    task_obj = load_task(task)
    model_id = model or task_obj.model
    if model_id is None:
        raise AcdcError(f"task {task_obj.name!r} names no default model; pass a model")
    lm = load_model(model_id, device=cfg.device, dtype=cfg.dtype)
    name = cfg.study_name or re.sub(r"[^\w.\-]+", "_",
                                    f"{task_obj.name}-{Path(str(model_id)).name}")
    root = Path(cfg.results).resolve() if cfg.results is not None else results_dir()
    url = _storage(cfg.storage, root)
    study, n_done = open_study(optuna, name, url, cfg)
    out_dir = root / "sweeps" / name
    out_dir.mkdir(parents=True, exist_ok=True)
    notes = [f"resumed: {n_done} finished trial(s) already in the study"] if n_done else []
    if requeued := requeue_interrupted(optuna, study):
        notes.append(f"{requeued} interrupted trial(s) queued again")
    objective = _Objective(lm, task_obj, cfg, out_dir, name, n_trials=n_trials)

    with run_context(cfg.experiment or f"sweep-{task_obj.name}", f"sweep {name}",
                     enabled=cfg.track, uri=cfg.tracking_uri,
                     tags={"acdc.kind": "sweep", "optuna.study": name}) as parent:
        objective.parent = parent
        parent.log_params({"study": name, "storage": _redact(url or "memory"),
                           "task": task_obj.name, "model": str(model_id),
                           "n_trials": n_trials, "methods": ",".join(cfg.methods),
                           "ablations": ",".join(cfg.ablations),
                           "tau_range": list(cfg.tau_range), "seed": cfg.seed})
        if n_done >= n_trials:
            notes.append(f"the study already has {n_done} finished trial(s) >= --n-trials "
                         f"{n_trials}: nothing to run (raise --n-trials to continue it)")
        else:
            try:
                work(optuna, study, objective, n_trials, cfg.timeout,
                      poll=min(2.0, (cfg.heartbeat or 4) / 2))
            except KeyboardInterrupt:  # queue the interrupted trial again, then stop
                try:
                    requeue_interrupted(optuna, study)
                except Exception:  # the next run of the sweep queues it
                    pass
                raise
        trials = [_trial_row(t) for t in study.get_trials(deepcopy=False)]
        front = sorted((_trial_row(t) for t in study.best_trials),
                       key=lambda r: (r["edges"], -r["faithfulness"]))
        _write(out_dir, parent, trials, front,
               {"study": name, "storage": _redact(url or "memory"), "task": task_obj.name,
                "model": str(model_id)})
    return SweepResult(name, url or "memory", front, trials, out_dir, parent.run_id,
                       objective.ran, notes)


def _config(config: SweepConfig | None, options: dict) -> SweepConfig:
    """``config`` (or the defaults) with the keyword ``options`` applied; unknown keywords are
    a TypeError naming the known ones."""
    known = {f.name for f in dataclasses.fields(SweepConfig)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"unknown sweep option(s) {unknown}; options are {sorted(known)}")
    cfg = dataclasses.replace(config or SweepConfig(), **options)
    cfg.methods, cfg.ablations = tuple(cfg.methods), tuple(cfg.ablations)
    cfg.tau_range = tuple(cfg.tau_range)
    return cfg


def _write(out_dir: Path, parent, trials: list[dict], front: list[dict], about: dict) -> None:
    """pareto.json and trials.json, and the parent run's summary metrics and artifacts."""
    (out_dir / "pareto.json").write_text(json.dumps(
        {**about, "objectives": ["faithfulness (max)", "edges (min)"], "pareto": front},
        indent=2, default=str))
    (out_dir / "trials.json").write_text(json.dumps(trials, indent=2, default=str))
    parent.log_metrics({"trials": len(trials), "pareto_size": len(front),
                        "failed": sum(t["state"] == "FAIL" for t in trials),
                        "best_faithfulness": max((r["faithfulness"] for r in front),
                                                 default=None)})
    parent.log_artifact(out_dir / "pareto.json")
    parent.log_artifact(out_dir / "trials.json")
