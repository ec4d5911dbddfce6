"""The MLP node's two hook points in the patched forward.

* **neurons** (:class:`~acdc_engine.patching.plan.NeuronPatch` per layer): the hidden
  activation is replaced on the way, by a forward pre-hook on the family's ``mlp_out_proj``.
* **replacement** (``PatchPlan.mlps``, the transcoders of the replacement model): the MLP node's
  output is replaced by ``mlps(layer, mlp_in, out)``, where ``mlp_in`` is what the family's
  ``mlp_module(layer)`` received (read by a forward pre-hook: the MLP's input after its norm)
  and ``out`` the node's own output. A replacement with ``needs_output = False`` gets ``None``
  for ``out``: the MLP stops at its module's input (nothing after it is computed).

Without either, :func:`mlp_node` is the family's ``mlp(layer, x)``.
"""

from __future__ import annotations

import torch

from ..models.adapter import ModelAdapter

__all__ = ["mlp_node"]


def mlp_node(adapter: ModelAdapter, layer: int, x: torch.Tensor, plan) -> torch.Tensor:
    """Layer ``layer``'s MLP node on its input ``x`` [b, p, d] under ``plan`` (a
    :class:`~acdc_engine.patching.plan.PatchPlan`): its neuron patch and MLP replacement."""
    patch = None if plan.neurons is None else plan.neurons.get(layer)
    if plan.mlps is None:
        return _neurons(adapter, layer, x, patch)
    seen, out = [], None
    stop = not getattr(plan.mlps, "needs_output", True)

    def read(module, args):
        seen.append(args[0])
        if stop:
            raise _Stop

    handle = adapter.mlp_module(layer).register_forward_pre_hook(read)
    try:
        out = _neurons(adapter, layer, x, patch)
    except _Stop:
        pass
    finally:
        handle.remove()
    if len(seen) != 1:
        raise RuntimeError(f"layer {layer}'s MLP module ran {len(seen)} times in one MLP call "
                           "(expected once): the family's mlp_module is wrong")
    return plan.mlps(layer, seen[0], out)


class _Stop(Exception):
    """Raised by the pre-hook of a replacement that needs no MLP output: the MLP stops."""


def _neurons(adapter: ModelAdapter, layer: int, x: torch.Tensor, patch) -> torch.Tensor:
    """The MLP on ``x``; with a :class:`NeuronPatch` ``patch``, its hidden activation ``h``
    becomes ``source + keep * (h - source)`` (a pre-hook on the family's ``mlp_out_proj``)."""
    if patch is None:
        return adapter.mlp(layer, x)
    calls = []

    def replace(module, args):
        h = args[0]  # [b, p, d_mlp]
        keep = patch.keep.to(h.dtype)
        calls.append(1)
        mixed = keep * h if patch.source is None else \
            patch.source.to(h.dtype) + keep * (h - patch.source.to(h.dtype))
        return (mixed, *args[1:])

    handle = adapter.mlp_out_proj(layer).register_forward_pre_hook(replace)
    try:
        out = adapter.mlp(layer, x)
    finally:
        handle.remove()
    if len(calls) != 1:
        raise RuntimeError(f"layer {layer}'s MLP output projection ran {len(calls)} times in "
                           "one MLP call (expected once): the family's mlp_out_proj is wrong")
    return out
