"""Frozen attention patterns and norm scales: the hook points of the replacement model.

A run with ``Context(freeze=True)`` computes the same values as the model, but its gradients
see attention patterns and normalisation scales as constants (the linearisation circuit
tracing uses: Ameisen et al. 2025). Two generic hook points, no family edits needed:

* **attention patterns**: the patched forward calls the family's attention with its ``q`` and
  ``k`` inputs detached and ``v`` live (a pattern depends on queries and keys only); within
  the run, :class:`FrozenAttentionMode` gives ``scaled_dot_product_attention`` a backward that
  is one product with the pattern (the value is the kernel's own).
* **norm scales**: a forward hook on every layer norm and RMS norm of the model
  (:func:`freeze_norms`) returns ``y + (lin(x) - lin(x).detach())``, where ``lin(x) =
  (x - mean x) * rstd.detach() * w`` (no mean for an RMS norm; ``1 + w`` for Gemma's): the
  value is the module's own output bit for bit, the gradient the frozen-scale one. The fused
  kernels must be off (``Context(fuse=False)``) so the norm modules are called; a family
  that normalizes inline reads ``adapter.frozen`` (Gemma 2/3's post-attention norm).

Every frozen quantity (the q/k inputs, each norm call's ``rstd``) goes through one
:class:`Freezer`, which records them in call order. A run given a recording freezer's
:meth:`Freezer.replay` uses the recorded values instead: attention patterns and norm scales
frozen *in value* as well, so the run is exactly affine in what it adds to the residual stream
(the replacement model's bias terms are such a run with the graph's nodes removed).
"""

from __future__ import annotations

import weakref

import torch

from ..errors import UnsupportedModelError
from .norms import _affine

__all__ = ["Freezer", "FrozenAttentionMode", "freeze_norms", "is_norm"]


class Freezer:
    """The constants of one frozen run, in call order: recorded (a fresh freezer) or replayed
    (:meth:`replay`: another run's, for a run frozen in value)."""

    def __init__(self, values: list | None = None):
        self.replaying = values is not None
        self.values = [] if values is None else values
        self.i = 0

    def replay(self) -> Freezer:
        """A freezer that hands out this one's recorded values, in the same order."""
        return Freezer(self.values)

    def constant(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` detached (recorded), or the recorded value in its place (replayed)."""
        if not self.replaying:
            t = t.detach()
            self.values.append(t)
            return t
        if self.i >= len(self.values):
            raise RuntimeError("a replayed frozen run asked for more constants than were "
                               "recorded: not the same model or prompt shape")
        self.i += 1
        return self.values[self.i - 1]


def is_norm(module: torch.nn.Module) -> bool:
    """Is ``module`` a norm the frozen run recognises (``LayerNorm``, ``*RMSNorm``)?"""
    return isinstance(module, torch.nn.LayerNorm) or "RMSNorm" in type(module).__name__


_KNOWN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""norm module -> (kind, Gemma's ``1 + w``), found once by :func:`_affine`."""


def _form(module, x: torch.Tensor, out: torch.Tensor):
    """(kind ``layer``/``rms``, weight or None, bias or None) of a recognised norm module, in
    its own arithmetic (the weight ``w`` or Gemma's ``1 + w``)."""
    known = _KNOWN.get(module)
    if known is None:
        with torch.no_grad():
            aff = _affine(module, x.detach(), out.detach())
        if aff is None:
            raise UnsupportedModelError(
                f"{type(module).__name__} is not a layer norm or RMS norm of a known form, so "
                "its scale cannot be frozen (the replacement model needs it)")
        w = getattr(module, "weight", None)
        known = _KNOWN[module] = (aff[0], w is not None and aff[3] is not w)
    kind, one_plus = known
    w = getattr(module, "weight", None)
    if w is not None:
        w = (1 + w.float()) if one_plus else w
    return kind, w, getattr(module, "bias", None) if kind == "layer" else None


class _FrozenNorm(torch.autograd.Function):
    """The norm's own output ``out``; backward through a constant scale ``rstd``:
    ``w * rstd * g`` (centred over the features for a layer norm)."""

    @staticmethod
    def forward(ctx, x, out, rstd, weight, layer: bool):
        ctx.save_for_backward(rstd, weight)
        ctx.layer = layer
        return out.detach().clone()

    @staticmethod
    def backward(ctx, g):
        rstd, weight = ctx.saved_tensors
        up = torch.promote_types(g.dtype, torch.float32)
        h = g.to(up) * rstd
        if weight is not None:
            h = h * weight.to(up)
        if ctx.layer:
            h = h - h.mean(-1, keepdim=True)
        return h.to(g.dtype), None, None, None, None


def _hook(freezer: Freezer):
    """The forward hook: ``out`` with the gradient of a constant scale (see the module), or,
    replaying, the norm with the recorded scale."""

    def frozen(module, args, out):
        x = args[0]
        kind, weight, bias = _form(module, x, out)
        up = torch.promote_types(x.dtype, torch.float32)  # as the norms: float32 at least
        eps = getattr(module, "variance_epsilon", getattr(module, "eps", None))
        eps = torch.finfo(x.dtype).eps if eps is None else float(eps)
        if not freezer.replaying:
            with torch.no_grad():
                xf = x.detach().to(up)
                if kind == "layer":
                    xf = xf - xf.mean(-1, keepdim=True)
                rstd = freezer.constant(torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps))
            if not (torch.is_grad_enabled() and x.requires_grad):
                return None
            w = None if weight is None else weight.detach()
            return _FrozenNorm.apply(x, out, rstd, w, kind == "layer")
        rstd = freezer.constant(None)
        xf = x.to(up)
        if kind == "layer":
            xf = xf - xf.mean(-1, keepdim=True)
        lin = xf * rstd
        if weight is not None:
            lin = lin * weight.to(up)
        return (lin if bias is None else lin + bias.to(up)).to(out.dtype)

    return frozen


def freeze_norms(model: torch.nn.Module, freezer: Freezer) -> list:
    """Forward hooks freezing the scale of every norm module of ``model`` through ``freezer``
    (see the module docstring); remove them with ``handle.remove()`` after the forward pass."""
    hook = _hook(freezer)
    return [m.register_forward_hook(hook) for m in model.modules() if is_norm(m)]


class _FrozenAttention(torch.autograd.Function):
    """``scaled_dot_product_attention(q, k, v)`` with ``q`` and ``k`` constants: the same value
    (the same kernel), and a backward that is one product with the pattern, ``P^T g``
    (the pattern computed once, on the first backward pass, and kept for the others)."""

    @staticmethod
    def forward(ctx, v, q, k, mask, causal: bool, scale):
        ctx.q, ctx.k, ctx.mask, ctx.causal, ctx.scale, ctx.P = q, k, mask, causal, scale, None
        return torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, scale=scale)

    @staticmethod
    def backward(ctx, g):
        if ctx.P is None:
            q, k = ctx.q, ctx.k
            up = torch.promote_types(q.dtype, torch.float32)
            scale = ctx.scale if ctx.scale is not None else q.shape[-1] ** -0.5
            s = (q.to(up) @ k.to(up).transpose(-1, -2)) * scale
            if ctx.causal:
                pq, pk = s.shape[-2], s.shape[-1]
                s = s.masked_fill(torch.ones(pq, pk, dtype=torch.bool,
                                             device=s.device).tril().logical_not(), float("-inf"))
            if ctx.mask is not None:
                s = s.masked_fill(~ctx.mask, float("-inf")) if ctx.mask.dtype == torch.bool \
                    else s + ctx.mask.to(up)
            ctx.P = s.softmax(-1).to(q.dtype)
        P = ctx.P
        return P.transpose(-1, -2) @ g.to(P.dtype), None, None, None, None, None


class FrozenAttentionMode(torch.overrides.TorchFunctionMode):
    """Within it (a frozen run), ``scaled_dot_product_attention`` takes its queries and keys as
    constants (they are: the run detaches the attention's q and k inputs; only weights could
    reach them) and gets :class:`_FrozenAttention`'s backward; a call it cannot express
    (dropout, grouped-query keys) is left as it is."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention:
            names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale")
            bound = dict(zip(names, args)) | kwargs
            q, k, v = bound.get("query"), bound.get("key"), bound.get("value")
            if (v.requires_grad and torch.is_grad_enabled() and not bound.get("dropout_p", 0.0)
                    and not bound.get("enable_gqa", False)
                    and q.shape[:-2] == k.shape[:-2] == v.shape[:-2]):
                return _FrozenAttention.apply(v, q.detach(), k.detach(), bound.get("attn_mask"),
                                              bool(bound.get("is_causal", False)),
                                              bound.get("scale"))
        return func(*args, **kwargs)
