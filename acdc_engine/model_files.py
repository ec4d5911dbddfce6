"""A local model directory's files, checked before anything is built from them.

:func:`check_model_dir` refuses a directory that cannot load, with one line naming the file
(headers only: no weights are read); :func:`check_config_size` refuses a config.json that
describes a model far larger than its weights hold. Both run before torch or transformers
build anything, so a broken or mismatched folder costs a fraction of a second and no memory.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .errors import AcdcError

__all__ = ["check_model_dir", "check_config_size"]


def check_config_size(path: Path) -> None:
    """Refuse, before building anything, a config.json that describes a model far larger than
    its safetensors weights hold: a config of another architecture without its sizes (say
    ``model_type: llama`` over a small GPT-2's weights) takes that architecture's defaults, a
    7B model, which would exhaust memory before :func:`check_loading_info` could name the
    mismatch. The estimate, ``12 layers d^2 + vocab d`` from the config's own sizes, is cheap
    and within a factor of 2 of every causal LM's count; only a config above twice what the
    weights hold (and above 10M) is refused here, the rest is left to the exact check."""
    files = sorted(path.glob("*.safetensors"))
    if not files:
        return
    held = 0
    for f in files:
        with open(f, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            header = json.loads(fh.read(n))
        for k, v in header.items():
            if k != "__metadata__":
                held += math.prod(v.get("shape") or [1])
    from transformers import AutoConfig

    try:
        cfg = AutoConfig.from_pretrained(str(path))
    except Exception:  # noqa: BLE001 - from_pretrained says what is wrong, with its own words
        return
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    d, layers = getattr(text, "hidden_size", None), getattr(text, "num_hidden_layers", None)
    vocab = getattr(text, "vocab_size", None) or 0
    if not isinstance(d, int) or not isinstance(layers, int):
        return
    planned = 12 * layers * d * d + vocab * d
    if planned > max(2 * held, 10_000_000):
        raise AcdcError(
            f"model {str(path)!r}: its config.json (model_type {cfg.model_type!r}, {layers} "
            f"layers, hidden size {d}) describes a model of about {_count(planned)} "
            f"parameters, but its weights hold {_count(held)} values: refused before building "
            "it, as nearly every weight would be random (does config.json belong to these "
            "weights? a config of another architecture without its sizes takes that "
            "architecture's defaults)")


def _count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def check_model_dir(path: Path) -> None:
    """Refuse a local model directory that cannot load, with one line naming the file: not a
    directory, empty, no or unreadable ``config.json``, no weights, a ``*.safetensors`` file that
    is truncated or not safetensors at all, a ``pytorch_model.bin`` that weights-only loading
    refuses (a pickle that asks to run code). Reads headers only (a safetensors file is checked
    against its own header; a .bin is opened memory-mapped on the meta device)."""
    if not path.is_dir():
        raise AcdcError(f"model path {str(path)!r} is a file; expected a model directory "
                        "(config.json and weights)")
    files = {p.name: p for p in path.iterdir()}
    if not files:
        raise AcdcError(f"model directory {str(path)!r} is empty; expected config.json and "
                        "weights (model.safetensors)")
    cfg = path / "config.json"
    if "config.json" not in files:
        raise AcdcError(f"model directory {str(path)!r} has no config.json (found: "
                        f"{', '.join(sorted(files)[:6])})")
    _check_is_file(cfg, "a JSON file")
    try:
        json.loads(cfg.read_text())
    except (OSError, ValueError) as e:
        raise AcdcError(f"{cfg} is not a readable JSON file: {_first_line(e)}") from None
    safetensors = sorted(p for n, p in files.items() if n.endswith(".safetensors"))
    bins = sorted(p for n, p in files.items() if n.endswith(".bin") and "model" in n)
    if not safetensors and not bins:
        raise AcdcError(f"model directory {str(path)!r} has no weights (model.safetensors or "
                        "pytorch_model.bin)")
    for p in safetensors:
        _check_is_file(p, "a weights file")
        _check_safetensors(p)
    if not safetensors:  # transformers would read the .bin files
        for p in bins:
            _check_is_file(p, "a weights file")
            _check_torch_bin(p)


def _check_is_file(path: Path, what: str) -> None:
    """``path`` is a readable regular file (a symbolic link to one is fine): a directory, a
    dangling link or a loop of links is one line naming it."""
    try:
        st = path.stat()
    except OSError as e:
        if path.is_symlink():
            raise AcdcError(f"{path} is a symbolic link that cannot be followed "
                            f"({e.strerror or e}); expected {what}") from None
        raise AcdcError(f"{path} cannot be read: {e.strerror or e}") from None
    import stat

    if stat.S_ISDIR(st.st_mode):
        raise AcdcError(f"{path} is a directory; expected {what}")
    if not stat.S_ISREG(st.st_mode):
        raise AcdcError(f"{path} is not a regular file; expected {what}")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise AcdcError(f"{path} cannot be read: {e.strerror or e}") from None


def _check_safetensors(path: Path) -> None:
    """A safetensors file: an 8-byte header length, a JSON header, then every tensor's bytes."""
    size = path.stat().st_size
    what = f"{path} is not a valid safetensors file"
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise AcdcError(f"{what}: only {size} bytes (truncated or empty)")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            if n > 100 * 2**20:
                raise AcdcError(f"{what}: its first bytes are not a safetensors header "
                                "(random or foreign data?)")
            raise AcdcError(f"{what}: truncated in its header ({size} bytes, the header alone "
                            f"needs {n + 8})")
        try:
            header = json.loads(f.read(n))
            ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise AcdcError(f"{what}: its header is not readable JSON (random or foreign "
                            "data?)") from None
    need = 8 + n + max(ends, default=0)
    if need > size:
        raise AcdcError(f"{path} is truncated: {size} bytes, its header describes {need}")


def _check_torch_bin(path: Path) -> None:
    """A pickled ``pytorch_model.bin`` must load with ``weights_only=True`` (no code runs)."""
    import torch

    try:
        torch.load(path, map_location="meta", weights_only=True, mmap=True)
    except Exception as e:
        text = _first_line(e)
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            text = "it asks to run code, which weights-only loading refuses"
        raise AcdcError(f"{path} cannot be loaded safely: {text}") from None
