"""Built-in plugin: the GPT-2 and Llama families, built-in metrics and methods, the shipped
``tiny-ioi`` model, and the model loader every other plugin's shipped models go through.

Registered through the ``acdc_engine`` entry-point group like any third-party plugin.
"""

from __future__ import annotations

from pathlib import Path

from acdc_engine.hookspecs import hookimpl

MODELS_DIR = Path(__file__).parent / "models"


@hookimpl
def acdc_model_families():
    from . import gemma, gpt2, llama, moe, neox, opt, phi3

    return [gpt2.FAMILY, llama.FAMILY, neox.FAMILY, gemma.FAMILY, phi3.FAMILY, opt.FAMILY,
            moe.FAMILY]


@hookimpl
def acdc_metrics():
    from .metrics import METRICS

    return METRICS


@hookimpl
def acdc_methods():
    from .mask_opt import METHODS as MASK_OPT
    from .methods import METHODS

    return METHODS + MASK_OPT


@hookimpl
def acdc_shipped_models():
    from acdc_engine.models import ShippedModel

    return [ShippedModel("tiny-ioi", MODELS_DIR / "tiny-ioi",
                         description="a tiny GPT-2 (4 layers, 4 heads) trained on the "
                         "synthetic ioi task"),
            ShippedModel("gpt2-ioi-bpe", MODELS_DIR / "gpt2-ioi-bpe",
                         description="a small GPT-2 with a byte-level BPE tokenizer trained on "
                         "ioi-names (IOI with real first names)")]


@hookimpl(trylast=True)
def acdc_load_model(model_id, device, dtype, revision):
    """Shipped names (any plugin's ``acdc_shipped_models``), local paths and hub ids, loaded
    with transformers and wrapped by nnsight."""
    from acdc_engine.loading import adapt, load_hf_model
    from acdc_engine.plugins import registry

    reg = registry()
    shipped = reg.shipped.get(model_id)
    source = str(shipped.path) if shipped is not None else model_id
    if shipped is not None and revision:
        from acdc_engine.errors import AcdcError

        raise AcdcError(f"revision {revision!r} does not apply to {model_id!r}: it is a model "
                        "shipped with acdc-engine (one version, no branches); a revision picks "
                        "a branch, tag or commit of a hub model; leave the revision out")
    hf, tok = load_hf_model(source, device=device, dtype=dtype, revision=revision)
    lm = adapt(model_id, hf, tok, reg.families, revision=revision)
    if shipped is not None and shipped.ground_truth is not None:
        lm.info["ground_truth"] = str(shipped.ground_truth)
    return lm
