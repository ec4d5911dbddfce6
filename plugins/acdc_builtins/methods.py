"""Built-in discovery methods: EAP and EAP-IG (attribution patching), the attribution variants
(EAP-IG over activations, clean-corrupted, AtP* GradDrop, EAP-GP, information flow routes:
docs/methods-attribution.md), ACDC and guided ACDC (iterative pruning with exact patching,
acdc_engine.scoring.acdc)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from acdc_engine.scoring import IG_STEPS, Method, MethodOutput, attribute, setting

CHUNK_HELP = ("examples per gradient pass (0: a whole batch); bounds memory, same scores up to "
              "float32 rounding")


@dataclass(frozen=True)
class EapSettings:
    """EAP's options."""

    chunk: int = setting(0, CHUNK_HELP)

    def __post_init__(self):
        if self.chunk < 0:
            raise ValueError(f"chunk must be 0 (a whole batch) or positive, got {self.chunk}")


@dataclass(frozen=True)
class IGSettings(EapSettings):
    """EAP-IG's options."""

    ig_steps: int = setting(IG_STEPS, "integrated-gradients interpolation steps", search=(1, 10))

    def __post_init__(self):
        super().__post_init__()
        if self.ig_steps < 1:
            raise ValueError(f"ig_steps must be at least 1, got {self.ig_steps}")


def _attribution(problem, settings, progress, *, method):
    steps = getattr(settings, "ig_steps", 1)
    return MethodOutput(attribute(problem, method=method, ig_steps=steps, progress=progress,
                                  chunk=settings.chunk or None))


METHODS = [
    Method("eap", partial(_attribution, method="eap"), settings=EapSettings,
           description="edge attribution patching: one gradient at the clean run"),
    Method("eap-ig", partial(_attribution, method="eap-ig"), settings=IGSettings,
           description="EAP with integrated gradients over interpolated input embeddings"),
]


# ----- attribution variants (acdc_engine.scoring.variants, .routes; docs/methods-attribution.md)


@dataclass(frozen=True)
class IGActSettings:
    """EAP-IG over activations' options."""

    ig_steps: int = setting(IG_STEPS, "interpolation steps per interpolated node", search=(1, 10))
    per: str = setting("layer", "'layer': one layer-node (embeddings, a layer's attention, an "
                       "MLP) interpolated at a time, held fixed (MIB); 'all': every writer at "
                       "once", search=["layer", "all"])

    def __post_init__(self):
        if self.ig_steps < 1:
            raise ValueError(f"ig_steps must be at least 1, got {self.ig_steps}")
        if self.per not in ("layer", "all"):
            raise ValueError(f"per must be 'layer' or 'all', got {self.per!r}")


@dataclass(frozen=True)
class RoutesSettings:
    """Information flow routes' options."""

    threshold: float = setting(0.0, "count a writer's share of a reader's input below this as "
                               "0 before averaging (Ferrando and Voita's tau; 0: MIB's)",
                               search=(0.0, 0.2))

    def __post_init__(self):
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")


def _cost(problem, passes: int, forwards: int = 0) -> dict:
    """What a method costs per batch, in gradient passes (one forward+backward of the batch)
    and extra plain forwards (the corrupted run, cached by the problem, not counted)."""
    return {"gradient_passes": passes, "extra_forwards": forwards,
            "batches": len(problem.batches)}


def _ig_act(problem, settings, progress):
    from acdc_engine.scoring.variants import eap_ig_activations, layer_nodes

    scores = eap_ig_activations(problem, settings.ig_steps, settings.per, progress)
    if settings.per == "all":
        return MethodOutput(scores, info=_cost(problem, settings.ig_steps))
    nodes = len(layer_nodes(problem.model.graph))
    return MethodOutput(scores, info=_cost(problem, nodes * settings.ig_steps, 1))


def _clean_corrupted(problem, settings, progress):
    from acdc_engine.scoring.variants import clean_corrupted

    return MethodOutput(clean_corrupted(problem, progress), info=_cost(problem, 2))


def _graddrop(problem, settings, progress):
    from acdc_engine.scoring.variants import atp_graddrop

    return MethodOutput(atp_graddrop(problem, progress),
                        info=_cost(problem, problem.graph.n_layers, 1))


def _atp_qk(problem, settings, progress):
    from acdc_engine.scoring.qk_fix import atp_qk

    g = problem.graph
    calls = sum(2 * g.attn_upstream(layer) + 1 for layer in range(g.n_layers))
    info = _cost(problem, 2, 1)
    info["attention_layer_calls"] = calls  # per batch, no gradient
    return MethodOutput(atp_qk(problem, progress), info=info)


@dataclass(frozen=True)
class GradPathSettings:
    """EAP-GP's options."""

    gp_steps: int = setting(5, "GradPath steps (the paper's k): gradient points on the path",
                            search=(1, 10))
    gp_step: float = setting(1.0, "length of each normalised step in embedding space, per "
                          "example (the paper's unit step)", search=(0.1, 4.0), log=True)

    def __post_init__(self):
        if self.gp_steps < 1:
            raise ValueError(f"gp_steps must be at least 1, got {self.gp_steps}")
        if not (self.gp_step > 0 and self.gp_step != float("inf")):
            raise ValueError(f"gp_step must be a finite length above 0, got {self.gp_step}")


def _eap_gp(problem, settings, progress):
    from acdc_engine.scoring.gradpath import eap_gp

    # the path: steps gradient passes; the scores: steps more; the clean writer outputs and
    # the ablated logits: two plain forwards
    return MethodOutput(eap_gp(problem, settings.gp_steps, settings.gp_step, progress),
                        info=_cost(problem, 2 * settings.gp_steps, 2))


def _routes(problem, settings, progress):
    from acdc_engine.scoring.routes import information_flow_routes

    return MethodOutput(information_flow_routes(problem, settings.threshold, progress),
                        info=_cost(problem, 0, 1))


METHODS += [
    Method("eap-ig-act", _ig_act, settings=IGActSettings,
           description="EAP-IG over activations (MIB): writer outputs interpolated between "
                       "ablated and clean, one layer at a time or all at once"),
    Method("eap-clean-corrupted", _clean_corrupted,
           description="EAP with the gradient averaged over the clean and the ablated point"),
    Method("atp-graddrop", _graddrop,
           description="AtP* GradDrop node scores (Kramar et al. 2024): |AtP| with the "
                       "gradient through each layer dropped in turn; a writer's score on each "
                       "of its edges"),
    Method("atp-qk", _atp_qk,
           description="EAP with AtP*'s QK fix (Kramar et al. 2024) on edges into queries and "
                       "keys: the attention pattern recomputed exactly for each removed edge"),
    Method("eap-gp", _eap_gp, settings=GradPathSettings,
           description="EAP-GP (Zhang et al. 2025): EAP-IG's mean gradient over GradPath, "
                       "normalised descent steps from the clean embeddings towards the "
                       "ablated output, instead of the straight line"),
    Method("info-flow-routes", _routes, settings=RoutesSettings,
           description="information flow routes (Ferrando and Voita 2024): each writer's "
                       "L1-proximity share of each reader's clean input; no counterfactual"),
]


# ----- iterative pruning (ACDC) -----------------------------------------------------------------


@dataclass(frozen=True)
class AcdcSettings:
    """ACDC's options."""

    tau: float = setting(0.01, "remove an edge when it makes the metric worse by less than "
                         "this", search=(1e-4, 1e-1), log=True)
    prune_metric: str = setting("auto", "metric ACDC prunes by: a metric name, 'task' for the "
                                "task's metric, or 'auto' (kl_div; the task's metric when the "
                                "model's output has one entry)")
    abs_value: bool = setting(False, "compare |change| with tau instead of the signed damage")
    speculate: int = setting(32, "at most this many candidates stacked in one forward")
    checkpoint: str = setting("", "a file to checkpoint to and resume from ('' = none)")
    checkpoint_every: int = setting(10, "nodes between checkpoints")

    def __post_init__(self):
        if not self.tau == self.tau:  # NaN
            raise ValueError("tau must be a number, got nan")
        if self.speculate < 1:
            raise ValueError(f"speculate must be at least 1, got {self.speculate}")
        if self.checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be at least 1, got {self.checkpoint_every}")
        if self.checkpoint:  # a location that cannot be written fails now, not mid-run
            from acdc_engine.scoring.acdc.checkpoints import checkpoint_problem

            if (why := checkpoint_problem(self.checkpoint)) is not None:
                raise ValueError(f"checkpoint={self.checkpoint!r} cannot be written: {why}")


@dataclass(frozen=True)
class GuidedSettings(AcdcSettings):
    """Guided ACDC's options: ACDC's, and how attribution guides it."""

    guide: str = setting("eap-ig", "attribution method that orders the tests: eap or eap-ig")
    ig_steps: int = setting(IG_STEPS, "EAP-IG steps of the guide", search=(1, 10))
    keep_factor: float | None = setting(10.0, "keep untested edges whose |estimate| >= "
                                        "keep_factor * tau (none: test every edge)")
    group_fraction: float = setting(0.5, "remove the least important edges in one verified "
                                    "group whose estimates sum below this fraction of tau")


def _prune_problem(problem, name):
    """The problem scored by ACDC's pruning metric ('task' = the task's own)."""
    from acdc_engine.plugins import registry
    from acdc_engine.scoring.acdc.pruning import default_prune_metric

    if name in (None, "", "auto"):
        name = default_prune_metric(problem)
    if name == "task":
        return problem
    return problem.with_metric(registry().metric(str(name)))


def _prune_info(result) -> dict:
    info = {"acdc_tested": result.n_tested, "acdc_kept": result.n_kept,
            "acdc_evaluations": result.n_evaluations, "acdc_seconds": result.seconds,
            "acdc_metric_full": result.metric_full, "acdc_metric_final": result.metric_final,
            "acdc_complete": int(result.complete)}
    info.update({k: v for k, v in result.info.items() if v is not None})
    return info


def _acdc_config(settings, progress, guide=None):
    """ACDC's run config from the method's settings (the checkpoint path '' means none)."""
    from acdc_engine.scoring.acdc import AcdcConfig

    return AcdcConfig(settings.tau, abs_value=settings.abs_value, speculate=settings.speculate,
                      checkpoint=settings.checkpoint or None,
                      checkpoint_every=settings.checkpoint_every, progress=progress, guide=guide)


def _acdc(problem, settings, progress):
    from acdc_engine.scoring.acdc import acdc, acdc_naive

    p = _prune_problem(problem, settings.prune_metric)
    # the incremental engine works on the unsplit graph; position-aware edges run the
    # reference loop (one patched forward per tested edge, the same decisions by definition)
    run = acdc_naive if p.graph.positions else acdc
    result = run(p, _acdc_config(settings, progress))
    return MethodOutput(result.scores, keep=result.keep, info=_prune_info(result))


def _acdc_guided(problem, settings, progress):
    from acdc_engine.scoring.acdc import Guide, acdc

    p = _prune_problem(problem, settings.prune_metric)
    if p.graph.positions:
        from acdc_engine.errors import AcdcError

        raise AcdcError("acdc-guided does not take position-aware edges yet; use 'acdc' (or "
                        "'eap'/'eap-ig') with --positions")
    estimates = attribute(p, method=settings.guide, ig_steps=settings.ig_steps,
                          progress=progress)
    guide = Guide(estimates, keep_factor=settings.keep_factor,
                  group_fraction=settings.group_fraction)
    result = acdc(p, _acdc_config(settings, progress, guide))
    return MethodOutput(result.scores, keep=result.keep, info=_prune_info(result))


METHODS += [
    Method("acdc", _acdc, settings=AcdcSettings, selects_circuit=True,
           description="ACDC: remove edges from the logits backwards while the metric (KL to "
                       "the full model by default) worsens by less than tau; exact patching"),
    Method("acdc-guided", _acdc_guided, settings=GuidedSettings, selects_circuit=True,
           description="ACDC guided by EAP/EAP-IG: edges tested in ascending |estimate|, the "
                       "least important removed in one verified group, the most important "
                       "kept untested"),
]
