"""The transcoders shipped with the engine's built-in models (small files, trained on CPU).

    tc = shipped_transcoders()                       # gpt2-ioi-bpe's per-layer transcoders
    tc = load_transcoders("path/or/owner/name")      # any format: engine, circuit-tracer
    clt = shipped_transcoders(kind="clt")            # its cross-layer transcoder
    shipped_path("gpt2-ioi-bpe")                     # the file

They live next to the model, in ``acdc_builtins/models/<model>-transcoders/`` (trained by
``plugins/acdc_builtins/models/train_gpt2_ioi_bpe_transcoders.py``; the folder's README gives
their figures).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import AcdcError
from .dictionary import Transcoders

__all__ = ["SHIPPED", "shipped_dir", "shipped_path", "shipped_transcoders", "load_transcoders",
           "load_any_format"]

SHIPPED: dict[str, dict[str, str]] = {
    "gpt2-ioi-bpe": {"transcoders": "transcoders.safetensors", "clt": "clt.safetensors"},
}
"""Per shipped model, its dictionaries by kind (file names in its ``-transcoders`` folder)."""


def _name(model) -> str:
    """A model's shipped name from a name, a path or a loaded model."""
    return Path(str(getattr(model, "id", model)).rstrip("/")).name


def shipped_dir(model="gpt2-ioi-bpe") -> Path:
    """The folder of ``model``'s shipped dictionaries."""
    name = _name(model)
    if name not in SHIPPED:
        raise AcdcError(f"no transcoders are shipped for model {name!r} (shipped: "
                        f"{', '.join(SHIPPED)}); train some with acdc dict train")
    spec = importlib.util.find_spec("acdc_builtins")
    if spec is None or spec.origin is None:
        raise AcdcError("the acdc_builtins plugin is not installed, so its shipped transcoders "
                        "are not either")
    return Path(spec.origin).parent / "models" / f"{name}-transcoders"


def shipped_path(model="gpt2-ioi-bpe", kind: str = "transcoders") -> Path:
    """The file of ``model``'s shipped dictionary of ``kind`` (``transcoders`` or ``clt``)."""
    files = SHIPPED.get(_name(model), {})
    folder = shipped_dir(model)
    if kind not in files:
        raise AcdcError(f"no {kind!r} dictionary is shipped for {_name(model)!r} (kinds: "
                        f"{', '.join(files)})")
    path = folder / files[kind]
    if not path.is_file():
        raise AcdcError(f"the shipped {kind} of {_name(model)!r} is missing: '{path}' (train "
                        "them with plugins/acdc_builtins/models/train_gpt2_ioi_bpe_transcoders.py)")
    return path


def shipped_transcoders(model="gpt2-ioi-bpe", kind: str = "transcoders") -> Transcoders:
    """``model``'s shipped transcoders (a name, path or loaded model; default the shipped
    ``gpt2-ioi-bpe``): per-layer (``kind="transcoders"``, a
    :class:`~.dictionary.TranscoderSet`) or cross-layer (``kind="clt"``)."""
    from .formats import load_dictionary

    return load_dictionary(shipped_path(model, kind))


def load_any_format(source, cache_dir=None):
    """A dictionary from any format the engine reads: an engine file, a SAELens folder, a
    circuit-tracer folder (:mod:`.circuit_tracer_format`), by local path or cached hub id."""
    from .circuit_tracer_format import is_circuit_tracer_folder, load_circuit_tracer
    from .formats import load_any, resolve_source

    path = resolve_source(source, cache_dir)
    if path.is_dir() and is_circuit_tracer_folder(path):
        return load_circuit_tracer(path)
    return load_any(path)


def load_transcoders(source=None, model=None) -> Transcoders:
    """Transcoders from ``source`` (any format :func:`load_any_format` reads), or, when
    ``source`` is None, ``model``'s shipped ones; a file holding a single-layer dictionary is
    refused with one line."""
    if source is None:
        return shipped_transcoders(model if model is not None else "gpt2-ioi-bpe")
    out = load_any_format(source)
    if not isinstance(out, Transcoders):
        raise AcdcError(f"'{source}' holds a {type(out).__name__} (one layer), not transcoders "
                        "for every layer (a TranscoderSet or cross-layer transcoder)")
    return out
