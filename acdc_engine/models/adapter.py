"""The :class:`ModelAdapter` protocol: one architecture run one component at a time.

A *model family* (a plugin) knows one architecture. Its adapter runs the model with the model's
own weights, so the patching core can feed every attention head its own q, k and v inputs::

    prepare(input_ids, workspace)  per-run state (e.g. rotary tables for this length); the
                                   patched forward calls it first, for every run, with the
                                   workspace its fused kernels use (``self.workspace``)
    embed(ids)                     -> [batch, pos, d_model]       the ``input`` node's output
    attn_heads(layer, q, k, v)     -> [head, batch, pos, d_model]  each head's write
    attn_bias(layer)               -> [d_model] or None            constant the layer adds
    mlp(layer, x)                  -> [batch, pos, d_model]
    unembed(x)                     -> [batch, pos, vocab]

``q, k, v`` are residual-stream tensors, either shared ``[batch, pos, d_model]`` or one per head
``[head, batch, pos, d_model]``; the adapter applies the layer's norm itself.

Optional summed attention: :meth:`ModelAdapter.attn_out` -> ``attn_heads(...).sum(0)``
``[batch, pos, d_model]``, what the layer's heads add together; a family may compute it without
forming each head's write (one dense output projection instead of ``head`` of them). The patched
forward calls it when no head's own write is needed (EAP-IG's interpolation steps).

Optional buffered attention: :meth:`ModelAdapter.attn_write` writes each head's write into a
slice of the patched forward's writer buffer and returns their sum, ``attn_heads(...).sum(0)``
bit for bit; a family may form the writes in place and give the sum a dense backward
(:mod:`acdc_engine.patching.head_writes`). The patched forward calls it whenever it keeps the
writers' outputs (gradient runs, the corrupted run, patched runs).

Optional per-head kernel: :meth:`ModelAdapter.attn_heads_subset` runs only some heads (ACDC's
engine re-runs one head per candidate). The base class implements it through ``attn_heads``; a
family with a faster one overrides it and declares ``fast_head_subset = True`` (and
``head_subset_last_query = True`` when ``q`` may hold the last position only). The engine checks
a declared kernel against ``attn_heads`` before trusting it.

Optional unembedding forms (ACDC's engine scores many candidates through them; both must equal
``unembed`` to float rounding): ``unembed_columns(x, columns)`` -> ``unembed(x)[..., columns]``
without the other logits; ``unembed_into(x, out)`` writes ``unembed(x)`` for ``x`` [n, d] into a
reused ``out`` [n, vocab]; ``unembed_linear()`` -> ``(final_norm, weight, bias)`` when
``unembed(x) == F.linear(final_norm(x), weight, bias)`` (else None), which lets the engine
unembed a change confined to a few heads' subspaces at low rank. A family without them gets the
full ``unembed``.

Optional hook point for MLP neurons: :meth:`ModelAdapter.mlp_out_proj` names the module of a
layer's MLP whose *input* is the hidden activation ``[batch, pos, d_mlp]`` (after the
nonlinearity and any gating), and :meth:`ModelAdapter.mlp_from_hidden` maps a hidden activation
to the MLP node's output. Neuron-level tools read the hidden activation with a forward pre-hook
on that module (they never change it) and express a change of neurons as a change of the MLP
writer's output in the patched forward. Families without one (mixture-of-experts blocks) refuse
with :class:`~acdc_engine.errors.UnsupportedModelError`.

Optional hook points for the replacement model (transcoders, :mod:`acdc_engine.features`):
:meth:`ModelAdapter.mlp_module` names the module whose first input is the MLP's input after its
norm (a transcoder reads it with a forward pre-hook); :meth:`ModelAdapter.token_embed` is the
token part of :meth:`embed` (without learned positions: an attribution graph's token nodes).
The patched forward sets ``frozen`` during a run with frozen attention patterns and norm scales;
a family that normalizes inline (not through a norm module) holds its scale constant then.

The invariants (tests/invariants, :mod:`acdc_engine.testing` for plugin authors) prove an
adapter reproduces the model's own forward pass as traced by nnsight.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Callable

import torch

from ..errors import UnsupportedModelError
from ..graph import Graph

__all__ = ["ModelAdapter", "ModelFamily"]


class ModelAdapter:
    """Runs one architecture component by component. Subclass per family."""

    n_layers: int
    n_heads: int
    d_model: int
    parallel: bool = False
    """Attention and MLP of a block read the same residual stream (GPT-J, GPT-NeoX)."""
    attn_only: bool = False
    """No MLPs (attention-only models, some tracr programs)."""
    fast_head_subset: bool = False
    """:meth:`attn_heads_subset` is overridden with a kernel faster than the generic one."""
    head_subset_last_query: bool = False
    """:meth:`attn_heads_subset` accepts ``q`` for the last position only."""
    frozen = None
    """Set by the patched forward during a run with frozen norm scales (``Context(freeze=
    ...)``): its :class:`~acdc_engine.patching.frozen.Freezer`; a norm computed inline passes
    its scale through ``frozen.constant(scale)`` (a constant for gradients, or a recorded
    value)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    # ----- the protocol ---------------------------------------------------------------------
    workspace = None
    """The patched forward's workspace for the current run (:meth:`prepare` sets it; None
    outside a patched run): pass it to the forward's fused kernels
    (:func:`acdc_engine.patching.norms.norm_project`)."""

    def prepare(self, input_ids: torch.Tensor, workspace=None) -> None:
        """Set up per-run state for prompts like ``input_ids`` [batch, pos]. The patched forward
        calls it first in every run, with its ``workspace``; a family that overrides it calls
        ``super().prepare(input_ids, workspace)``."""
        self.workspace = workspace

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def attn_heads(
        self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> torch.Tensor:
        raise NotImplementedError

    def attn_bias(self, layer: int) -> torch.Tensor | None:
        return None

    def attn_out(self, layer: int, q: torch.Tensor, k: torch.Tensor,
                 v: torch.Tensor) -> torch.Tensor:
        """The sum of the heads' writes, ``attn_heads(layer, q, k, v).sum(0)`` [batch, pos,
        d_model]. Generic: exactly that; a family may skip the per-head writes."""
        return self.attn_heads(layer, q, k, v).sum(0)

    def attn_write(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                   out: torch.Tensor) -> torch.Tensor:
        """Each head's write into ``out`` [head, batch, pos, d_model] (values only) and their
        sum [batch, pos, d_model], differentiable like ``attn_heads(...).sum(0)`` and equal to
        it bit for bit. Generic: ``attn_heads`` copied into ``out``."""
        heads = self.attn_heads(layer, q, k, v)
        out.copy_(heads.detach())
        return heads.sum(0)

    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def unembed(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def attn_heads_subset(self, layer: int, heads: list[int], q: torch.Tensor,
                          k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Only the heads ``heads``: inputs and output ``[len(heads), batch, pos, d_model]``.

        Generic: the whole layer with the other heads fed zeros, then the heads selected."""
        H = self.n_heads

        def full(x):
            if len(heads) == H:
                return x
            out = x.new_zeros((H, *x.shape[1:]))
            out[heads] = x
            return out

        return self.attn_heads(layer, full(q), full(k), full(v))[heads]

    # ----- optional hook point: MLP neurons ------------------------------------------------
    def mlp_out_proj(self, layer: int) -> torch.nn.Module:
        """The module of layer ``layer``'s MLP whose input is the hidden activation
        ``[batch, pos, d_mlp]`` (read it with a forward pre-hook; the module must be called
        once per :meth:`mlp` call, with that tensor as its first argument).

        Default: refused; a family overrides it where its MLP has an output projection."""
        raise UnsupportedModelError(
            f"{type(self).__name__} declares no MLP output projection (mlp_out_proj), so its "
            "MLP neurons cannot be read or ablated; neuron tools need a dense MLP whose output "
            "projection is a module (a mixture-of-experts block has one per expert)"
        )

    def mlp_from_hidden(self, layer: int, h: torch.Tensor) -> torch.Tensor:
        """The MLP node's output ``[batch, pos, d_model]`` from its hidden activation ``h``
        ``[batch, pos, d_mlp]``: ``mlp(layer, x) == mlp_from_hidden(layer, hidden of x)``.

        Default: :meth:`mlp_out_proj` applied to ``h``; a family whose MLP node does more after
        the projection (Gemma 2/3's post-norm) overrides it."""
        return self.mlp_out_proj(layer)(h)

    # ----- optional hook points: the replacement model ----------------------------------------
    def mlp_module(self, layer: int) -> torch.nn.Module:
        """The module of layer ``layer``'s MLP whose first input is the MLP's input after its
        norm (what a transcoder reads), called once per :meth:`mlp` call.

        Default: refused; a family overrides it."""
        raise UnsupportedModelError(
            f"{type(self).__name__} declares no MLP module (mlp_module), so transcoders cannot "
            "read its MLP input; the replacement model needs a family that names it"
        )

    def token_embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The token part of :meth:`embed` [batch, pos, d_model] (learned position embeddings
        left out: they are a constant of the prompt). Default: :meth:`embed`."""
        return self.embed(input_ids)

    # ----- derived ----------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @cached_property
    def graph(self) -> Graph:
        return Graph(self.n_layers, self.n_heads, parallel=self.parallel, attn_only=self.attn_only)


@dataclass(frozen=True)
class ModelFamily:
    """A named architecture: ``matches(hf_model)`` says whether ``adapter(hf_model)`` can run it."""

    name: str
    matches: Callable[[torch.nn.Module], bool]
    adapter: Callable[[torch.nn.Module], ModelAdapter]
    description: str = ""
