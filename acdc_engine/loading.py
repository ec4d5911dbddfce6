"""Loading a Hugging Face model through nnsight and proving its family adapter runs it.

    hf, tok = load_hf_model("path/or/hub-id", device="cpu")
    model = adapt("my-model", hf, tok, families)      # picks the family, runs the self-check

:func:`adapt` tries the families in order and keeps the first whose ``matches`` is true, then
:func:`self_check` refuses an adapter that does not reproduce the model's own logits (traced
through nnsight) on a probe input: an unknown configuration fails at load time with a clear
error instead of giving silently wrong circuits. Loading by name goes through the plugins
(``acdc_load_model`` hook, shipped models): :func:`acdc_engine.load_model`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .errors import AcdcError, UnsupportedModelError
from .models import LoadedModel, ModelFamily, resolve_device, resolve_dtype
from .patching import run

__all__ = ["load_hf_model", "wrap", "adapt", "self_check"]


def load_hf_model(
    path_or_id: str, *, device=None, dtype=None, revision: str | None = None
) -> tuple[torch.nn.Module, Any | None]:
    """Load a causal LM and (if it has one) its tokenizer from a local path or the hub."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # loading small models is instant; the bar is noise
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    local = Path(path_or_id).expanduser()
    looks_like_path = path_or_id.startswith((".", "/", "~")) or path_or_id.count("/") > 1
    if not local.exists() and looks_like_path:
        raise AcdcError(f"model path {path_or_id!r} does not exist")
    source = str(local) if local.exists() else path_or_id
    try:
        hf = AutoModelForCausalLM.from_pretrained(source, dtype=dt, revision=revision)
    except OSError as e:
        raise AcdcError(
            f"could not load model {path_or_id!r}: {str(e).splitlines()[0]} "
            "(a local directory needs config.json and weights; a hub id needs network access)"
        ) from None
    except ValueError as e:
        raise UnsupportedModelError(
            f"could not load model {path_or_id!r}: {str(e).splitlines()[0]}"
        ) from None
    hf = hf.to(dev).eval()
    try:
        tok = AutoTokenizer.from_pretrained(source, revision=revision)
    except (OSError, ValueError, TypeError):
        tok = None
    return hf, _declared_tokenizer(source, tok)


def _declared_tokenizer(source: str, tok):
    """Honour a local tokenizer_config.json's ``tokenizer_class`` when AutoTokenizer ignored it.

    transformers 5 prefers the model type's tokenizer class (e.g. Qwen2Tokenizer), which rebuilds
    a different pipeline around a custom tokenizer.json; the declared class loads it as saved.
    """
    import transformers

    cfg = Path(source) / "tokenizer_config.json"
    if tok is None or not cfg.is_file():
        return tok
    declared = json.loads(cfg.read_text()).get("tokenizer_class")
    if declared not in ("PreTrainedTokenizerFast", "TokenizersBackend"):
        return tok  # a model-specific class: AutoTokenizer's choice is the right one
    cls = getattr(transformers, declared, None)
    if cls is None or type(tok) is cls:
        return tok
    return cls.from_pretrained(source)


def wrap(hf: torch.nn.Module, tokenizer: Any | None):
    """Wrap a Hugging Face module with nnsight (TransformersModel when there is a tokenizer)."""
    if tokenizer is not None:
        from nnsight import TransformersModel

        return TransformersModel(hf, tokenizer=tokenizer, task="text-generation")
    from nnsight import NNsight

    return NNsight(hf)


def adapt(model_id: str, hf: torch.nn.Module, tokenizer, families: dict[str, ModelFamily]
          | list[ModelFamily], revision: str | None = None) -> LoadedModel:
    """Pick the first of ``families`` that runs ``hf``, build the :class:`LoadedModel` and
    check it (:func:`self_check`)."""
    families = list(families.values()) if isinstance(families, dict) else list(families)
    for fam in families:
        if fam.matches(hf):
            loaded = LoadedModel(
                id=model_id, nn=wrap(hf, tokenizer), adapter=fam.adapter(hf),
                tokenizer=tokenizer, family=fam.name, revision=revision,
            )
            self_check(loaded)
            return loaded
    arch = type(hf).__name__
    mtype = getattr(getattr(hf, "config", None), "model_type", "?")
    raise UnsupportedModelError(
        f"no registered model family runs {model_id!r} ({arch}, model_type={mtype!r}); "
        f"known families: {', '.join(sorted(f.name for f in families)) or 'none'}. "
        "A plugin can add one through the acdc_model_families hook."
    )


def self_check(model: LoadedModel, length: int = 4) -> None:
    """Refuse a model whose adapter does not reproduce its own forward pass on a probe input.

    Catches configurations a family does not know (an unusual attention variant, a scaled
    embedding) at load time, with a clear error, rather than as silently wrong circuits.
    """
    vocab = getattr(model.hf.config, "vocab_size", 2)
    ids = (torch.arange(length, device=model.device) * 7 + 1)[None] % vocab
    with torch.no_grad():
        ref = model.reference_logits(ids).float()
        got = run(model.adapter, ids).float()
    err = float((got - ref).abs().max() / ref.abs().max().clamp(min=1.0))
    tol = 1e-3 if model.dtype == torch.float32 else 5e-2
    if not err < tol:
        raise UnsupportedModelError(
            f"model {model.id!r}: the {model.family!r} family adapter does not reproduce the "
            f"model's own logits (relative difference {err:.2e} > {tol:g}); this configuration "
            "is not supported by that family"
        )
