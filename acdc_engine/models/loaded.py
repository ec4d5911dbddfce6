"""A loaded model (:class:`LoadedModel`), and reading device and dtype options."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch

from ..errors import AcdcError
from ..graph import Graph
from .adapter import ModelAdapter

__all__ = ["LoadedModel", "resolve_device", "resolve_dtype"]


@dataclass
class LoadedModel:
    """A model ready for discovery: the nnsight wrapper, its adapter and its tokenizer.

    ``info`` carries what the loader knows besides (e.g. ``ground_truth``: a file path)."""

    id: str
    nn: Any  # nnsight.NNsight / TransformersModel wrapping ``hf``
    adapter: ModelAdapter
    tokenizer: Any | None
    family: str
    revision: str | None = None
    info: dict = field(default_factory=dict)

    @property
    def hf(self) -> torch.nn.Module:
        """The underlying Hugging Face module."""
        return self.nn._module

    @property
    def graph(self) -> Graph:
        return self.adapter.graph

    @property
    def device(self) -> torch.device:
        return self.adapter.device

    @property
    def devices(self) -> list[str]:
        """Every device the model's weights are on (several under a ``device_map``), sorted."""
        return sorted({str(p.device) for p in self.hf.parameters()})

    @property
    def dtype(self) -> torch.dtype:
        return self.adapter.dtype

    @contextmanager
    def frozen(self):
        """Within it, no weight requires grad (those that did again after): gradients flow to
        the edge mask only, and the adapters' fused paths (which skip weight gradients) apply.
        Attribution runs inside it."""
        params = [p for p in self.hf.parameters() if p.requires_grad]
        for p in params:
            p.requires_grad_(False)
        try:
            yield self
        finally:
            for p in params:
                p.requires_grad_(True)

    @cached_property
    def weights_hash(self) -> str:
        """sha256 over parameter names and bytes (first 16 hex digits): identifies the weights."""
        h = hashlib.sha256()
        for name, p in sorted(self.hf.state_dict().items()):
            h.update(name.encode())
            h.update(p.detach().float().cpu().numpy().tobytes())
        return h.hexdigest()[:16]

    def reference_logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The model's own logits for ``input_ids``, through an nnsight trace (no adapter)."""
        with torch.no_grad(), self.nn.trace(input_ids.to(self.device)):
            logits = self.nn.output.logits.save()
        return logits


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/"auto" -> CUDA when available, else CPU; anything else as torch reads it."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise AcdcError(f"unknown device {device!r} (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise AcdcError(f"device {device!r} was asked for, but torch sees no CUDA device")
    return dev


_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """A torch dtype from a name (``"float32"``, ``"bfloat16"``, ...), a dtype, or None
    (float32); an unknown name is an error naming the known ones."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    try:
        return _DTYPES[str(dtype).replace("torch.", "")]
    except KeyError:
        raise AcdcError(f"unknown dtype {dtype!r} (use one of {sorted(_DTYPES)})") from None
