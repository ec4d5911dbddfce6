"""Ground-truth models plugin: compiled tracr programs and an attention-only induction toy.

Provides, through the ordinary hooks:

* the model family ``tracr`` (:mod:`acdc_tracr.family`) for :class:`~acdc_tracr.modeling.
  TracrForCausalLM` (registered with ``AutoConfig``/``AutoModelForCausalLM`` on import, so the
  models also load by path through the built-in loader);
* the shipped models ``tracr-reverse``, ``tracr-frac-prevs`` (converted by
  ``convert_tracr.py`` from ``tasks/tracr/``) and ``toy-induction`` (``train_induction.py``),
  each with a ``ground_truth.json`` (see :mod:`acdc_engine.evaluation.groundtruth`), listed
  through ``acdc_shipped_models`` and loaded by the built-in loader;
* the tasks ``tracr-reverse``, ``tracr-frac-prevs`` and ``induction`` (:mod:`acdc_tracr.tasks`)
  and the metric ``l2`` (:mod:`acdc_tracr.metrics`).

No JAX or tracr is needed at run time.
"""

from __future__ import annotations

from pathlib import Path

from acdc_engine.hookspecs import hookimpl

from .modeling import register_auto_classes

MODELS_DIR = Path(__file__).parent / "models"

#: The shipped models: name -> one-line description.
MODELS = {
    "tracr-reverse": "tracr program reverse, compiled and converted (ground truth: 10 edges)",
    "tracr-frac-prevs": "tracr program frac_prevs, compiled and converted (ground truth: 5 "
                        "edges)",
    "toy-induction": "2-layer attention-only induction toy (ground truth: 11 edges)",
}

register_auto_classes()


@hookimpl
def acdc_model_families():
    from .family import FAMILY

    return [FAMILY]


@hookimpl
def acdc_shipped_models():
    """The ground-truth models, loaded by name through the built-in loader."""
    from acdc_engine.models import ShippedModel

    return [ShippedModel(name, MODELS_DIR / name, ground_truth=MODELS_DIR / name /
                         "ground_truth.json", description=text) for name, text in MODELS.items()]


@hookimpl
def acdc_tasks():
    from .tasks import TASKS

    return TASKS


@hookimpl
def acdc_metrics():
    from .metrics import METRICS

    return METRICS
