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
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from .errors import AcdcError, UnsupportedModelError
from .model_files import _first_line, check_config_size, check_model_dir

if TYPE_CHECKING:  # torch, the models and the patched forward are imported where they are used,
    import torch  # so the file checks (check_model_dir) run before any heavy import

    from .models import LoadedModel, ModelFamily

__all__ = ["load_hf_model", "plan_device_map", "check_model_dir", "check_loading_info",
           "check_config_size", "hub_options", "hub_reachable", "wrap", "adapt", "self_check"]


def load_hf_model(
    path_or_id: str, *, device=None, dtype=None, revision: str | None = None,
    device_map: dict | str | None = None, max_memory: dict | None = None,
) -> tuple[torch.nn.Module, Any | None]:
    """Load a causal LM and (if it has one) its tokenizer from a local path or the hub.

    ``device_map`` (or a dict given as ``device``, e.g. through ``load_model``) places the
    model's modules with accelerate: ``{"transformer.h.0": "cuda:0", ...}``, a plan from
    :func:`plan_device_map`, or ``"auto"``/``"balanced"`` with ``max_memory``; the model is then
    not moved as a whole."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from .models import resolve_device, resolve_dtype

    if isinstance(device, dict):
        device_map, device = device, None

    hf_logging.disable_progress_bar()  # loading small models is instant; the bar is noise
    dev, dt = resolve_device(device), resolve_dtype(dtype)
    local = Path(path_or_id).expanduser()
    looks_like_path = path_or_id.startswith((".", "/", "~")) or path_or_id.count("/") > 1
    if not local.exists() and looks_like_path:
        raise AcdcError(f"model path {path_or_id!r} does not exist")
    if local.exists():
        if revision:
            raise AcdcError(f"revision {revision!r} does not apply to model {path_or_id!r}: it "
                            "is a local directory, and a revision picks a branch, tag or commit "
                            "of a hub model; leave the revision out")
        check_model_dir(local)  # a broken directory is one line naming the file
        check_config_size(local)  # a config far larger than its weights: refused unbuilt
        source, extra = str(local), {}
    else:
        source, extra = path_or_id, hub_options(path_or_id, revision)
    placed = {}
    if device_map is not None:
        _require_accelerate()
        placed = {"device_map": device_map, "max_memory": max_memory}
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # its load report scrolls by; check_loading_info says it
    try:
        hf, info = AutoModelForCausalLM.from_pretrained(
            source, dtype=dt, revision=revision, output_loading_info=True, **extra, **placed)
    except OSError as e:
        hint = ("accept the model's licence on its hub page, then `hf auth login` or set "
                "HF_TOKEN" if "gated" in str(e).lower() else
                "a local directory needs config.json and weights; a hub id needs network access")
        raise AcdcError(f"could not load model {path_or_id!r}: {_first_line(e)} ({hint})"
                        ) from None
    except ValueError as e:
        raise UnsupportedModelError(
            f"could not load model {path_or_id!r}: {_first_line(e)}"
        ) from None
    except Exception as e:  # e.g. a weights file the checks above could not see through
        raise AcdcError(f"could not load model {path_or_id!r}: {type(e).__name__}: "
                        f"{_first_line(e)}") from None
    finally:
        hf_logging.set_verbosity(verbosity)
    check_loading_info(path_or_id, hf, info)
    if placed and any(p.device.type == "meta" for p in hf.parameters()):
        raise AcdcError(
            f"model {path_or_id!r}: the device_map offloads weights (to 'cpu' beside "
            "accelerators, or to 'disk'); the patched forward reads each module's weights "
            "directly, so every module must live on a device (plan with max_memory over "
            "accelerators only, or over 'cpu' alone)")
    hf = (hf if placed else hf.to(dev)).eval()
    try:
        tok = AutoTokenizer.from_pretrained(source, revision=revision, **extra)
    except (OSError, ValueError, TypeError):
        tok = None
    return hf, _declared_tokenizer(source, tok)


def check_loading_info(model_id: str, hf, info: dict) -> None:
    """Refuse a model whose weights file does not fill it: weights the configuration needs but
    the file lacks (transformers would initialise them at random), weights in the file the
    model does not use, and weights of another shape. A circuit of random weights must never
    be reported as a result; this is what a config.json of another architecture (or another
    number of layers) over the weights gives."""
    def names(key: str) -> list[str]:
        return sorted(str(k if isinstance(k, str) else k[0]) for k in info.get(key) or ())

    missing, unused, shapes = names("missing_keys"), names("unexpected_keys"), \
        names("mismatched_keys")
    if not (missing or unused or shapes):
        return

    def some(keys: list[str]) -> str:
        return ", ".join(keys[:4]) + (f", … ({len(keys)} in all)" if len(keys) > 4 else "")

    cfg = getattr(hf, "config", None)
    shape = [f"model_type {getattr(cfg, 'model_type', '?')!r}"]
    layers = getattr(cfg, "num_hidden_layers", None)
    if layers is not None:
        shape.append(f"{layers} layers")
    parts = []
    if missing:
        parts.append(f"{len(missing)} weight(s) the configuration needs are not in the "
                     f"weights file and would be random ({some(missing)})")
    if unused:
        parts.append(f"{len(unused)} weight(s) in the file would be unused ({some(unused)})")
    if shapes:
        parts.append(f"{len(shapes)} weight(s) have another shape in the file "
                     f"({some(shapes)})")
    raise AcdcError(f"model {model_id!r}: its weights do not match its config.json "
                    f"({', '.join(shape)}): {'; '.join(parts)}; refused, as a circuit of "
                    "random weights would be no result (check config.json against the "
                    "weights)")


def _require_accelerate():
    from .extras import require

    return require("accelerate", "all", "loading with a device_map (a model across devices)")


def plan_device_map(path_or_id: str, max_memory: dict, dtype=None) -> dict[str, str | int]:
    """Plan where each module of a model goes, without loading its weights: the model is built
    on the meta device (accelerate's ``init_empty_weights``) and
    ``infer_auto_device_map`` fills the devices of ``max_memory`` in order (e.g.
    ``{0: "20GiB", 1: "20GiB", "cpu": "60GiB"}``), never splitting a decoder block. Returns
    module name -> device, for :func:`load_hf_model`'s ``device_map``."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from .models import resolve_dtype

    accelerate = _require_accelerate()
    config = AutoConfig.from_pretrained(path_or_id)
    with accelerate.init_empty_weights():
        empty = AutoModelForCausalLM.from_config(config)
    empty.tie_weights()  # tied embeddings are planned once
    return dict(accelerate.infer_auto_device_map(
        empty, max_memory=max_memory, dtype=resolve_dtype(dtype),
        no_split_module_classes=list(getattr(empty, "_no_split_modules", None) or [])))


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_reachable(timeout: float = 3.0) -> str | None:
    """None if the Hugging Face hub (``$HF_ENDPOINT``) answers a TCP connect within
    ``timeout`` seconds, else why not (so a missing model fails in seconds, not after ~35 s of
    transformers' retries)."""
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname or "", port), timeout=timeout).close()
    except OSError as e:
        return f"{url.geturl()} cannot be reached ({e.strerror or e})"
    return None


def hub_options(model_id: str, revision: str | None = None) -> dict:
    """``from_pretrained`` options for hub id ``model_id``: ``local_files_only`` when offline
    (``HF_HUB_OFFLINE``) or when the hub cannot be reached and the model is cached; an
    :class:`AcdcError` at once when neither the hub nor the cache has it."""
    from huggingface_hub import try_to_load_from_cache

    try:
        cached = isinstance(try_to_load_from_cache(model_id, "config.json", revision=revision),
                            str)
    except Exception:  # not a valid repo id: transformers says what is wrong with it
        return {}
    if _offline():
        if not cached:
            raise AcdcError(f"model {model_id!r} is not a local directory and not in the "
                            "Hugging Face cache, and HF_HUB_OFFLINE is set (unset it to "
                            "download, or pass a local path)")
        return {"local_files_only": True}
    why = hub_reachable()
    if why is None:
        return {}
    if cached:
        return {"local_files_only": True}
    raise AcdcError(f"model {model_id!r} is not a local directory and not in the Hugging Face "
                    f"cache, and {why}; pass a local path, or download it where there is "
                    "network access")


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
    from .models import LoadedModel

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
    import torch

    from .patching import run

    vocab = getattr(model.hf.config.get_text_config(), "vocab_size", 2)
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
