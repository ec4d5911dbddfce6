"""Dictionary files: the engine's own format and SAELens-style folders, read and written.

* The engine's format (:data:`FORMAT`): one safetensors file holding the module's
  ``state_dict`` and, in its metadata, its ``config()`` as JSON (and optional training
  ``figures``). Any dictionary, :class:`~.dictionary.TranscoderSet` or
  :class:`~.dictionary.CrossLayerTranscoder` round-trips bit for bit
  (:func:`save_dictionary`, :func:`load_dictionary`).
* SAELens (v6 layout): a folder with ``cfg.json`` (``architecture`` standard | topk | jumprelu |
  transcoder | jumprelu_transcoder, ``d_in``, ``d_sae``, ``d_out``, ``k``,
  ``apply_b_dec_to_input``, ``normalize_activations``, and ``metadata`` with ``model_name``,
  ``hook_name``, ``hook_layer``) and ``sae_weights.safetensors`` (``W_enc`` [d_in, d_sae],
  ``W_dec`` [d_sae, d_out], ``b_enc``, ``b_dec``, ``threshold`` for JumpReLU)
  (:func:`save_saelens`, :func:`load_saelens`). SAELens computes ``topk`` and ``jumprelu`` as
  the engine does (the top ``k`` pre-activations relu'd; ``pre * (pre > threshold)``).

:func:`load_any` takes a local file or folder, or a Hugging Face id (``owner/name`` or
``owner/name/sub/folder``) already in the local cache, offline; a missing cache entry is refused
with one line. (circuit-tracer's transcoder files: :mod:`.circuit_tracer_format`.)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import AcdcError
from .dictionary import (FORMAT, SAE, AnyDictionary, Dictionary, Transcoder, from_config,
                         save_dictionary)

__all__ = ["FORMAT", "save_dictionary", "load_dictionary", "read_safetensors", "fill",
           "save_saelens", "load_saelens", "resolve_source", "load_any", "SAELENS_VERSION"]

SAELENS_VERSION = "6.54.12"
"""The SAELens version whose folder layout :func:`save_saelens` writes."""

CFG, WEIGHTS = "cfg.json", "sae_weights.safetensors"
_ARCH = {("sae", "relu"): "standard", ("sae", "topk"): "topk", ("sae", "jumprelu"): "jumprelu",
         ("transcoder", "relu"): "transcoder",
         ("transcoder", "jumprelu"): "jumprelu_transcoder"}
_FROM_ARCH = {v: k for k, v in _ARCH.items()}


def read_safetensors(path: str | Path, what: str = "dictionary") -> tuple[dict, dict]:
    """The tensors and metadata of a safetensors file; a missing, unreadable or corrupted file
    refused with one line naming it."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise AcdcError(f"{what} file '{path}' does not exist" if not path.exists()
                        else f"{what} path '{path}' is not a file")
    try:
        with safe_open(str(path), "pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise AcdcError(f"{what} file '{path}' is not a readable safetensors file "
                        f"({path.stat().st_size} bytes; {first})") from None


def fill(module: torch.nn.Module, tensors: dict, path: str | Path) -> None:
    """Copy ``tensors`` into ``module``'s parameters, refusing (one line naming ``path``) a
    missing or extra tensor, a shape that does not match, or a tensor that is not float."""
    want = module.state_dict()
    missing, extra = sorted(set(want) - set(tensors)), sorted(set(tensors) - set(want))
    if missing or extra:
        said = [x for x in (missing and f"missing {', '.join(missing)}",
                            extra and f"unexpected {', '.join(extra)}") if x]
        raise AcdcError(f"dictionary file '{path}' does not match its config: {'; '.join(said)}")
    for k, v in want.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise AcdcError(f"dictionary file '{path}': {k} is {list(tensors[k].shape)}, but its "
                            f"config needs {list(v.shape)}")
        if not tensors[k].is_floating_point():
            raise AcdcError(f"dictionary file '{path}': {k} holds {tensors[k].dtype}, not floats")
    module.load_state_dict({k: tensors[k].to(want[k].dtype) for k in want})


def _finish(dictionary, path, figures: dict | None = None):
    """Mark where ``dictionary`` came from (``source``) and its ``figures``; eval mode."""
    dictionary.source, dictionary.figures = str(path), dict(figures or {})
    return dictionary.eval()


def load_dictionary(path: str | Path) -> AnyDictionary:
    """A dictionary written by :func:`save_dictionary`, its ``source`` set to ``path`` and its
    ``figures`` (a dict, maybe empty) read back. A missing or corrupted file, a file of another
    format or one whose tensors do not match its config is refused with one line naming it."""
    tensors, meta = read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise AcdcError(f"dictionary file '{path}' is not in the engine's format (its metadata "
                        f"names format {meta.get('format')!r}, not {FORMAT!r})")
    try:
        config = json.loads(meta["config"])
        figures = json.loads(meta.get("figures") or "{}")
        dictionary = from_config(config)
    except (KeyError, ValueError, TypeError, AcdcError) as e:
        raise AcdcError(f"dictionary file '{path}' has a broken config in its metadata "
                        f"({type(e).__name__}: {e})") from None
    fill(dictionary, tensors, path)
    return _finish(dictionary, path, figures)


# ----- SAELens ---------------------------------------------------------------------------------
def _hooks(d: Dictionary) -> tuple[str, str | None]:
    """TransformerLens hook names of what ``d`` reads (and, for a transcoder, writes)."""
    if isinstance(d, Transcoder):
        return f"blocks.{d.layer}.ln2.hook_normalized", f"blocks.{d.layer}.hook_mlp_out"
    if d.layer < 0:
        return "blocks.0.hook_resid_pre", None
    return f"blocks.{d.layer}.hook_resid_post", None


def save_saelens(dictionary: Dictionary, folder: str | Path) -> Path:
    """Write an SAE or per-layer transcoder as a SAELens folder (``cfg.json`` and
    ``sae_weights.safetensors``); returns the folder. A topk transcoder has no SAELens
    architecture and is refused."""
    from safetensors.torch import save_file

    arch = _ARCH.get((dictionary.kind, dictionary.activation))
    if arch is None:
        raise AcdcError(f"SAELens has no architecture for a {dictionary.activation} "
                        f"{dictionary.kind}; save it in the engine's format instead")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hook, hook_out = _hooks(dictionary)
    meta = {"sae_lens_version": SAELENS_VERSION, "sae_lens_training_version": SAELENS_VERSION,
            "model_name": dictionary.model, "hook_name": hook, "hook_layer": dictionary.layer,
            "hook_head_index": None, "prepend_bos": False}
    cfg = {"architecture": arch, "d_in": dictionary.d_in, "d_sae": dictionary.n_features,
           "dtype": "float32", "device": "cpu",
           "apply_b_dec_to_input": dictionary.center_input,
           "normalize_activations": "none", "reshape_activations": "none",
           "hook_name": hook, "hook_layer": dictionary.layer, "model_name": dictionary.model,
           "metadata": meta}
    if dictionary.activation == "topk":
        cfg.update(k=dictionary.k, rescale_acts_by_decoder_norm=False)
    if hook_out is not None:
        cfg.update(d_out=dictionary.d_out, hook_name_out=hook_out,
                   hook_layer_out=dictionary.layer)
        meta.update(hook_name_out=hook_out, hook_layer_out=dictionary.layer)
    save_file({k: v.detach().contiguous().cpu() for k, v in dictionary.state_dict().items()},
              str(folder / WEIGHTS))
    (folder / CFG).write_text(json.dumps(cfg, indent=2))
    return folder


def _layer_from(cfg: dict, meta: dict, folder: Path, kind: str) -> int:
    """The layer a SAELens config names, from its hook name (``blocks.L.hook_resid_post``: L;
    ``blocks.L.hook_resid_pre``: the stream after layer L - 1), else ``hook_layer``. An SAE
    must read the residual stream between layers (``hook_resid_pre``/``post``); another hook
    (``hook_resid_mid``, ``attn.hook_z``, ...) is refused."""
    hook = str(cfg.get("hook_name") or meta.get("hook_name") or cfg.get("hook_point") or "")
    parts = hook.split(".")
    if len(parts) >= 3 and parts[0] == "blocks" and parts[1].isdigit():
        site = ".".join(parts[2:])
        if kind == "sae" and site not in ("hook_resid_pre", "hook_resid_post"):
            raise AcdcError(f"SAELens config '{folder / CFG}' reads {hook!r}; the engine's SAEs "
                            "read the residual stream between layers (hook_resid_pre or "
                            "hook_resid_post)")
        return int(parts[1]) - (1 if site == "hook_resid_pre" else 0)
    layer = cfg.get("hook_layer", meta.get("hook_layer"))
    if layer is not None:
        return int(layer)
    raise AcdcError(f"SAELens config '{folder / CFG}' names no layer (no hook_layer, and hook "
                    f"name {hook!r} is not blocks.<layer>.<hook>)")


def load_saelens(folder: str | Path) -> Dictionary:
    """An SAE or per-layer transcoder from a SAELens folder (``cfg.json`` +
    ``sae_weights.safetensors``). Refused with one line naming the file: a missing or broken
    file, an architecture or input normalisation the engine does not compute, tensors whose
    names or shapes disagree with the config. An SAE saved with ``apply_b_dec_to_input=false``
    is loaded with its encoder bias absorbing ``b_dec @ W_enc`` (the same function)."""
    folder = Path(folder)
    if not (folder / CFG).is_file():
        raise AcdcError(f"SAELens folder '{folder}' has no {CFG}" if folder.is_dir()
                        else f"SAELens folder '{folder}' does not exist")
    try:
        cfg = json.loads((folder / CFG).read_text())
        meta = cfg.get("metadata") or {}
        arch = cfg.get("architecture") or ("topk" if cfg.get("activation_fn") == "topk"
                                           else "standard")
        d_in, d_sae = int(cfg["d_in"]), int(cfg["d_sae"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise AcdcError(f"SAELens config '{folder / CFG}' is broken ({type(e).__name__}: "
                        f"{e})") from None
    if arch not in _FROM_ARCH:
        raise AcdcError(f"SAELens config '{folder / CFG}': architecture {arch!r} is not one the "
                        f"engine computes ({', '.join(_FROM_ARCH)})")
    if cfg.get("normalize_activations", "none") not in ("none", None):
        raise AcdcError(f"SAELens config '{folder / CFG}': normalize_activations "
                        f"{cfg['normalize_activations']!r} is not supported (only 'none')")
    kind, activation = _FROM_ARCH[arch]
    k = cfg.get("k") or (cfg.get("activation_fn_kwargs") or {}).get("k")
    cls = SAE if kind == "sae" else Transcoder
    try:
        d = cls(d_in, d_sae, d_out=int(cfg.get("d_out", d_in)),
                layer=_layer_from(cfg, meta, folder, kind), activation=activation,
                k=None if k is None else int(k),
                model=cfg.get("model_name") or meta.get("model_name"))
    except (ValueError, TypeError) as e:
        raise AcdcError(f"SAELens config '{folder / CFG}' is broken ({e})") from None
    tensors, _ = read_safetensors(folder / WEIGHTS, "SAELens weights")
    if kind == "sae" and cfg.get("apply_b_dec_to_input") is False and "W_enc" in tensors \
            and "b_dec" in tensors and "b_enc" in tensors:
        tensors["b_enc"] = tensors["b_enc"] + tensors["b_dec"] @ tensors["W_enc"]
    if "scaling_factor" in tensors and bool((tensors["scaling_factor"] == 1).all()):
        del tensors["scaling_factor"]  # SAELens' own files carry an all-ones factor at times
    fill(d, tensors, folder / WEIGHTS)
    return _finish(d, folder)


def resolve_source(source: str | Path, cache_dir: str | Path | None = None) -> Path:
    """A local path, or the local Hugging Face cache folder of ``owner/name[/sub/folder]``
    (offline: ``snapshot_download(..., local_files_only=True)``); a source that is neither
    is refused with one line."""
    path = Path(source)
    if path.exists():
        return path
    parts = str(source).strip("/").split("/")
    if len(parts) < 2 or str(source).startswith((".", "/", "~")):
        raise AcdcError(f"dictionary '{source}' does not exist (a local path, or a Hugging Face "
                        "id owner/name[/folder] in the local cache)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    repo = "/".join(parts[:2])
    try:
        root = Path(snapshot_download(repo, local_files_only=True, cache_dir=cache_dir))
    except (LocalEntryNotFoundError, OSError, ValueError) as e:
        raise AcdcError(f"dictionary '{source}': Hugging Face repo {repo!r} is not in the local "
                        f"cache ({type(e).__name__}; downloads are off here)") from None
    path = root.joinpath(*parts[2:])
    if not path.exists():
        raise AcdcError(f"dictionary '{source}': the cached repo {repo!r} has no "
                        f"'{'/'.join(parts[2:])}'")
    return path


def load_any(source: str | Path, cache_dir: str | Path | None = None) -> AnyDictionary:
    """A dictionary from an engine file, a SAELens folder, or a folder holding one engine file
    (``dictionary.safetensors``), by local path or cached Hugging Face id (``cache_dir``: the
    hub cache, default Hugging Face's)."""
    path = resolve_source(source, cache_dir)
    if path.is_dir():
        if (path / CFG).is_file():
            return load_saelens(path)
        if (path / "dictionary.safetensors").is_file():
            return load_dictionary(path / "dictionary.safetensors")
        raise AcdcError(f"dictionary folder '{path}' holds neither a SAELens {CFG} nor "
                        "dictionary.safetensors")
    return load_dictionary(path)
