"""Mask-optimization methods: Edge Pruning and UGS (acdc_engine.scoring.mask_opt).

    acdc discover --task tracr-reverse --method edge-pruning --set target_sparsity=0.85
    acdc discover --task ioi --method ugs --set warm_start=eap-ig --set steps=500

Both choose their own circuit (deterministic mask > 0.5) and score every edge (log-alpha,
theta), so top-n and threshold selections work as for the other methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

from acdc_engine.scoring import Method, MethodOutput, setting


def _known_methods() -> list[str]:
    from acdc_engine.plugins import registry

    return sorted(registry().methods)


@dataclass(frozen=True)
class _MaskOptSettings:
    """What both mask optimizations take."""

    steps: int = setting(300, "optimizer steps (one batch each, cycling over the batches)")
    lr: float = setting(0.1, "Adam learning rate of the mask parameters", search=(0.01, 0.5),
                        log=True)
    lambda_lr: float = setting(0.1, "Adam learning rate of the Lagrange multipliers (ascent)")
    warmup: float = setting(0.5, "fraction of the steps over which the target sparsity rises "
                            "from 0")
    loss_metric: str = setting("auto", "metric the mask preserves: a metric name, 'task' for "
                               "the task's metric, or 'auto' (kl_div to the full model; the "
                               "task's metric when the model's output has one entry)")
    warm_start: str = setting("", "initialise from scores: a method name (e.g. eap-ig, run "
                              "with its defaults) or a saved run (edge_scores.tsv or its run "
                              "directory); '' = none")
    samples: int = setting(1, "mask samples (patched forward+backward runs) per step")
    seed: int = setting(0, "seed of the mask noise")
    checkpoint: str = setting("", "a file to checkpoint to and resume from ('' = none)")
    checkpoint_every: int = setting(50, "steps between checkpoints")

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        for name in ("lr", "lambda_lr"):
            v = getattr(self, name)
            if not v > 0:
                raise ValueError(f"{name} must be positive, got {v}")
        if not 0.0 <= self.warmup <= 1.0:
            raise ValueError(f"warmup must be in [0, 1] (a fraction of the steps), got "
                             f"{self.warmup}")
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1, got {self.samples}")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, got {self.checkpoint_every}")
        t = getattr(self, "target_sparsity", None)
        if t is not None and not 0.0 <= t <= 1.0:
            raise ValueError(f"target_sparsity must be in [0, 1] (the fraction of edges "
                             f"removed), got {t}")
        lm = self.loss_metric.strip()
        if lm not in ("", "auto", "task"):
            from acdc_engine.plugins import registry

            if lm not in registry().metrics:
                raise ValueError(f"loss_metric {lm!r} is not a metric (metrics: "
                                 f"{', '.join(sorted(registry().metrics))}; or 'task', 'auto')")
        ws = self.warm_start.strip()
        if ws and ws not in _known_methods() and not Path(ws).expanduser().exists():
            known = ", ".join(_known_methods())
            raise ValueError(f"warm_start {ws!r} is neither a method ({known}) nor a saved "
                             "run's edge_scores.tsv or run directory")
        if self.checkpoint:
            from acdc_engine.scoring.acdc.checkpoints import checkpoint_problem

            if (why := checkpoint_problem(self.checkpoint)) is not None:
                raise ValueError(f"checkpoint={self.checkpoint!r} cannot be written: {why}")


@dataclass(frozen=True)
class EdgePruningSettings(_MaskOptSettings):
    """Edge Pruning's options."""

    target_sparsity: float = setting(0.9, "fraction of the edges to remove, in [0, 1]",
                                     search=(0.5, 0.99))


@dataclass(frozen=True)
class UgsSettings(_MaskOptSettings):
    """UGS's options."""

    lr: float = setting(0.05, "Adam learning rate of the mask parameters", search=(0.005, 0.5),
                        log=True)
    lamb: float = setting(1e-3, "penalty per kept edge (sum of keep probabilities; MIB: "
                          "0.001), used when target_sparsity is none")
    target_sparsity: float | None = setting(None, "fraction of the edges to remove, held by a "
                                            "Lagrangian as in Edge Pruning (none: the fixed "
                                            "penalty lamb)", search=(0.5, 0.99))

    def __post_init__(self):
        super().__post_init__()
        if not self.lamb >= 0:
            raise ValueError(f"lamb must be 0 or positive, got {self.lamb}")


def _warm_scores(problem, ref: str, progress: bool):
    """Per-edge scores to start from: a method's (run now with its defaults) or a saved run's
    (refused, in one line, when they are of another graph)."""
    from acdc_engine.plugins import registry

    methods = registry().methods
    if ref in methods:
        m = methods[ref]
        return m.run(problem, m.configure({}), progress).scores
    from acdc_engine.records.files import read_scores
    from acdc_engine.records.runs import find_run

    return read_scores(find_run(ref).scores_path, problem.graph)


def _loss_problem(problem, name: str):
    """The problem scored by the metric the mask preserves ('task': the task's own; 'auto':
    kl_div, or the task's metric on a one-output model, as ACDC's pruning metric)."""
    from acdc_engine.plugins import registry
    from acdc_engine.scoring.acdc.pruning import default_prune_metric

    name = name.strip() or "auto"
    if name == "auto":
        name = default_prune_metric(problem)
    return problem if name == "task" else problem.with_metric(registry().metric(name))


def _run(problem, settings, progress, *, kind):
    from acdc_engine.scoring.mask_opt import MaskOptConfig, optimize_mask

    init = (_warm_scores(problem, settings.warm_start.strip(), progress)
            if settings.warm_start.strip() else None)
    config = MaskOptConfig(
        kind=kind, target_sparsity=settings.target_sparsity,
        lamb=getattr(settings, "lamb", 0.0), steps=settings.steps, lr=settings.lr,
        lambda_lr=settings.lambda_lr, warmup=settings.warmup, samples=settings.samples,
        seed=settings.seed, init=init, checkpoint=settings.checkpoint or None,
        checkpoint_every=settings.checkpoint_every, progress=progress)
    result = optimize_mask(_loss_problem(problem, settings.loss_metric), config)
    return MethodOutput(result.scores, keep=result.keep, info=dict(result.info))


METHODS = [
    Method("edge-pruning", partial(_run, kind="edge-pruning"), settings=EdgePruningSettings,
           selects_circuit=True,
           description="Edge Pruning (Bhaskar et al. 2024): hard-concrete edge masks trained "
                       "with Adam to keep the metric, a Lagrangian holding the target sparsity"),
    Method("ugs", partial(_run, kind="ugs"), settings=UgsSettings, selects_circuit=True,
           description="uniform gradient sampling (Li & Janson 2024; MIB's mask-learning "
                       "baseline): sampled continuous edge masks with a sparsity penalty"),
]
