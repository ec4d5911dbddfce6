"""Frozen attention patterns and norm scales: the hook points of the replacement model.

A run with ``Context(freeze=True)`` computes the same values as the model, but its gradients
see attention patterns and normalisation scales as constants (the linearisation circuit
tracing uses: Ameisen et al. 2025). Two generic hook points, no family edits needed:

* **attention patterns**: the patched forward calls the family's attention with its ``q`` and
  ``k`` inputs detached and ``v`` live (a pattern depends on queries and keys only).
* **norm scales**: a forward hook on every layer norm and RMS norm of the model
  (:func:`freeze_norms`) returns ``y + (lin(x) - lin(x).detach())``, where ``lin(x) =
  (x - mean x) * rstd.detach() * w`` (no mean for an RMS norm; ``1 + w`` for Gemma's): the
  value is the module's own output bit for bit, the gradient the frozen-scale one. The fused
  kernels must be off (``Context(fuse=False)``) so the norm modules are called; a family
  that normalizes inline reads ``adapter.frozen`` (Gemma 2/3's post-attention norm).
"""

from __future__ import annotations

import torch

from ..errors import UnsupportedModelError
from .norms import _affine

__all__ = ["freeze_norms", "is_norm"]


def is_norm(module: torch.nn.Module) -> bool:
    """Is ``module`` a norm the frozen run recognises (``LayerNorm``, ``*RMSNorm``)?"""
    return isinstance(module, torch.nn.LayerNorm) or "RMSNorm" in type(module).__name__


def _frozen(module, args, out):
    """The forward hook: ``out`` with the gradient of a constant scale (see the module)."""
    x = args[0] if args else None
    if not (torch.is_grad_enabled() and isinstance(x, torch.Tensor) and x.requires_grad):
        return None
    with torch.no_grad():
        aff = _affine(module, x.detach(), out.detach())
    if aff is None:
        raise UnsupportedModelError(
            f"{type(module).__name__} is not a layer norm or RMS norm of a known form, so its "
            "scale cannot be frozen (the replacement model needs it)")
    kind, rstd, _, weight, _ = aff
    xf = x.float()
    if kind == "layer":
        xf = xf - xf.mean(-1, keepdim=True)
    lin = xf * rstd
    if weight is not None:
        lin = lin * weight.float()
    lin = lin.to(out.dtype)
    return out.detach() + (lin - lin.detach())


def freeze_norms(model: torch.nn.Module) -> list:
    """Forward hooks freezing the scale of every norm module of ``model`` (see the module
    docstring); remove them with ``handle.remove()`` after the forward pass."""
    return [m.register_forward_hook(_frozen) for m in model.modules() if is_norm(m)]
