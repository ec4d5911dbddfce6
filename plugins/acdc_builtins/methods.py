"""Built-in discovery methods: EAP and EAP-IG (attribution patching), ACDC and guided ACDC
(iterative pruning with exact patching, acdc_engine.pruning)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from acdc_engine.scoring import Method, MethodOutput, NoSettings, attribute, setting


@dataclass(frozen=True)
class IGSettings:
    """EAP-IG's options."""

    ig_steps: int = setting(5, "integrated-gradients interpolation steps", search=(1, 10))

    def __post_init__(self):
        if self.ig_steps < 1:
            raise ValueError(f"ig_steps must be at least 1, got {self.ig_steps}")


def _attribution(problem, settings, progress, *, method):
    steps = getattr(settings, "ig_steps", 1)
    return MethodOutput(attribute(problem, method=method, ig_steps=steps, progress=progress))


METHODS = [
    Method("eap", partial(_attribution, method="eap"), settings=NoSettings,
           description="edge attribution patching: one gradient at the clean run"),
    Method("eap-ig", partial(_attribution, method="eap-ig"), settings=IGSettings,
           description="EAP with integrated gradients over interpolated input embeddings"),
]


# ----- iterative pruning (ACDC) -----------------------------------------------------------------

_ACDC_DEFAULTS = {
    "tau": 0.01,  # remove an edge when it makes the metric worse by less than this
    "prune_metric": "kl_div",  # KL to the full model; "task" = the task's metric; or a name
    "abs_value": False,  # compare |change| with tau instead of the signed damage
    "speculate": 32,  # at most this many candidates stacked in one forward
    "checkpoint": "",  # a file to checkpoint to and resume from ("" = none)
    "checkpoint_every": 10,  # nodes between checkpoints
}


def _flag(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _prune_metric(name, task_metric):
    from acdc_engine.plugins import registry

    if name in (None, "", "task"):
        return task_metric
    return registry().metric(str(name))


def _prune_info(result) -> dict:
    info = {"acdc_tested": result.n_tested, "acdc_kept": result.n_kept,
            "acdc_evaluations": result.n_evaluations, "acdc_seconds": result.seconds,
            "acdc_metric_full": result.metric_full, "acdc_metric_final": result.metric_final,
            "acdc_complete": int(result.complete)}
    info.update({k: v for k, v in result.info.items() if v is not None})
    return info


def _acdc(model, batches, metric, ablation, settings, progress):
    from acdc_engine.pruning import acdc

    pm = _prune_metric(settings.get("prune_metric"), metric)
    result = acdc(model, batches, pm, ablation, float(settings["tau"]),
                  abs_value=_flag(settings.get("abs_value")),
                  speculate=int(settings.get("speculate", 32)),
                  checkpoint=settings.get("checkpoint") or None,
                  checkpoint_every=int(settings.get("checkpoint_every", 10)), progress=progress)
    return MethodOutput(result.scores, keep=result.keep, info=_prune_info(result))


def _acdc_guided(model, batches, metric, ablation, settings, progress):
    from acdc_engine.pruning import acdc_guided, with_clean_logits

    pm = _prune_metric(settings.get("prune_metric"), metric)
    guide = str(settings.get("guide", "eap-ig"))
    estimates = attribute(model, with_clean_logits(model, batches, pm), pm, ablation,
                          method=guide, ig_steps=int(settings.get("ig_steps", 5)),
                          progress=progress)
    keep_factor = settings.get("keep_factor")
    keep_factor = None if keep_factor in (None, "", 0, "none") else float(keep_factor)
    result = acdc_guided(model, batches, pm, ablation, float(settings["tau"]), estimates,
                         keep_factor=keep_factor,
                         group_fraction=float(settings.get("group_fraction", 0.5)),
                         abs_value=_flag(settings.get("abs_value")),
                         speculate=int(settings.get("speculate", 32)),
                         checkpoint=settings.get("checkpoint") or None,
                         checkpoint_every=int(settings.get("checkpoint_every", 10)),
                         progress=progress)
    return MethodOutput(result.scores, keep=result.keep, info=_prune_info(result))


METHODS += [
    Method("acdc", _acdc, defaults=dict(_ACDC_DEFAULTS), selects_circuit=True,
           description="ACDC: remove edges from the logits backwards while the metric (KL to "
                       "the full model by default) worsens by less than tau; exact patching"),
    Method("acdc-guided", _acdc_guided, selects_circuit=True,
           defaults={**_ACDC_DEFAULTS, "guide": "eap-ig", "ig_steps": 5, "keep_factor": 10.0,
                     "group_fraction": 0.5},
           description="ACDC guided by EAP/EAP-IG: edges tested in ascending |estimate|, the "
                       "least important removed in one verified group, the most important "
                       "kept untested"),
]
