"""Built-in plugin: the GPT-2 and Llama families, built-in metrics and methods, the model loader.

Registered through the ``acdc_engine`` entry-point group like any third-party plugin.
"""

from __future__ import annotations

from pathlib import Path

from acdc_engine.hookspecs import hookimpl

MODELS_DIR = Path(__file__).parent / "models"

#: Models shipped with the package, by name.
SHIPPED = {"tiny-ioi": MODELS_DIR / "tiny-ioi"}


@hookimpl
def acdc_model_families():
    from . import gpt2, llama

    return [gpt2.FAMILY, llama.FAMILY]


@hookimpl
def acdc_metrics():
    from .metrics import METRICS

    return METRICS


@hookimpl
def acdc_methods():
    from .methods import METHODS

    return METHODS


@hookimpl(trylast=True)
def acdc_load_model(model_id, device, dtype, revision):
    """Shipped names, local paths and hub ids, loaded with transformers and wrapped by nnsight."""
    from acdc_engine.loading import adapt, load_hf_model
    from acdc_engine.plugins import registry

    source = str(SHIPPED.get(model_id, model_id))
    hf, tok = load_hf_model(source, device=device, dtype=dtype, revision=revision)
    return adapt(model_id, hf, tok, registry().families, revision=revision)
