"""Ground-truth models plugin: compiled tracr programs and an attention-only induction toy.

Provides, through the ordinary hooks:

* the model family ``tracr`` (:mod:`acdc_tracr.family`) for :class:`~acdc_tracr.modeling.
  TracrForCausalLM` (registered with ``AutoConfig``/``AutoModelForCausalLM`` on import, so the
  models also load by path through the built-in loader);
* the shipped models ``tracr-reverse``, ``tracr-frac-prevs`` (converted by
  ``convert_tracr.py`` from ``tasks/tracr/``) and ``toy-induction`` (``train_induction.py``),
  each with a ``ground_truth.json`` (see :mod:`acdc_engine.groundtruth`);
* the tasks ``tracr-reverse``, ``tracr-frac-prevs`` and ``induction`` (:mod:`acdc_tracr.tasks`)
  and the metric ``l2`` (:mod:`acdc_tracr.metrics`).

No JAX or tracr is needed at run time.
"""

from __future__ import annotations

from pathlib import Path

from acdc_engine.hookspecs import hookimpl

from .modeling import register_auto_classes

MODELS_DIR = Path(__file__).parent / "models"

#: Models shipped with this plugin, by name.
SHIPPED = {name: MODELS_DIR / name for name in ("tracr-reverse", "tracr-frac-prevs",
                                                  "toy-induction")}

register_auto_classes()


@hookimpl
def acdc_model_families():
    from .family import FAMILY

    return [FAMILY]


@hookimpl
def acdc_tasks():
    from .tasks import TASKS

    return TASKS


@hookimpl
def acdc_metrics():
    from .metrics import METRICS

    return METRICS


@hookimpl
def acdc_load_model(model_id, device, dtype, revision):
    """The shipped ground-truth models by name; None for anything else."""
    path = SHIPPED.get(model_id)
    if path is None:
        return None
    from acdc_engine.loading import adapt, load_hf_model
    from acdc_engine.plugins import registry

    hf, tok = load_hf_model(str(path), device=device, dtype=dtype)
    lm = adapt(model_id, hf, tok, registry().families)
    gt = path / "ground_truth.json"
    if gt.exists():
        lm.info["ground_truth"] = str(gt)
    return lm
