"""Ground-truth models plugin: compiled tracr programs and an attention-only induction toy.

Provides, through the ordinary hooks:

* the model family ``tracr`` (:mod:`acdc_tracr.family`) for :class:`~acdc_tracr.modeling.
  TracrForCausalLM` (registered with ``AutoConfig``/``AutoModelForCausalLM`` just before one is
  loaded, by this plugin's ``acdc_load_model``, so the models also load by path through the
  built-in loader; call :func:`acdc_tracr.modeling.register_auto_classes` to load one with
  transformers directly);
* the shipped models ``tracr-reverse``, ``tracr-frac-prevs`` (converted by
  ``convert_tracr.py`` from ``tasks/tracr/``) and ``toy-induction`` (``train_induction.py``),
  each with a ``ground_truth.json`` (see :mod:`acdc_engine.evaluation.groundtruth`), listed
  through ``acdc_shipped_models`` and loaded by the built-in loader;
* the tasks ``tracr-reverse``, ``tracr-frac-prevs`` and ``induction`` (:mod:`acdc_tracr.tasks`)
  and the metric ``l2`` (:mod:`acdc_tracr.metrics`).

No JAX or tracr is needed at run time. Importing this module imports neither torch nor
transformers (``acdc plugins`` and option errors do not wait for them).
"""

from __future__ import annotations

import json
from pathlib import Path

from acdc_engine.hookspecs import hookimpl

MODELS_DIR = Path(__file__).parent / "models"

#: The shipped models: name -> one-line description.
MODELS = {
    "tracr-reverse": "tracr program reverse, compiled and converted (ground truth: 10 edges)",
    "tracr-frac-prevs": "tracr program frac_prevs, compiled and converted (ground truth: 5 "
                        "edges)",
    "toy-induction": "2-layer attention-only induction toy (ground truth: 11 edges)",
}



def _is_tracr(model_id: str) -> bool:
    """A shipped tracr model, or a local directory whose config.json has model_type
    ``acdc_tracr``."""
    if model_id in MODELS:
        return True
    cfg = Path(model_id).expanduser() / "config.json"
    try:
        return cfg.is_file() and json.loads(cfg.read_text()).get("model_type") == "acdc_tracr"
    except (OSError, ValueError, AttributeError):
        return False  # the loader reports a broken directory


@hookimpl(tryfirst=True)
def acdc_load_model(model_id, device, dtype, revision):
    """Not a loader: teaches transformers model_type ``acdc_tracr`` before the built-in loader
    loads one (returns None, so the next plugin loads it)."""
    if _is_tracr(str(model_id)):
        from .modeling import register_auto_classes

        register_auto_classes()
    return None


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
