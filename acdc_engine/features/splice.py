"""The replacement model: transcoders spliced into the patched forward in place of the MLPs.

:func:`spliced_run` runs a model with every MLP node's output replaced by its transcoders'
reconstruction (``Transcoders.decode``: the features of layers ``<= j`` decoded into layer
``j``'s MLP output), plus an error term::

    mlp_in_j  = what layer j's MLP module receives (the residual stream after the MLP's norm)
    acts_j    = edit(j, encode(j, mlp_in_j))                                [b, p, n]
    out_j     = sum_{i <= j} acts_i @ decoder(i, j) + b_dec(j) + error_j

``errors=True``: ``error_j = mlp_j(x) - reconstruction_j`` of this run (from the unedited
activations), a constant for gradients (an error node), so without an edit the logits are the
model's own to float32 rounding; ``errors=False``: no error (the pure replacement model); a list
of per-layer tensors [b, p, d]: fixed errors (another run's, e.g. the unedited one, as
interventions use; a tensor that requires grad gets its gradient).

``freeze=True`` freezes attention patterns and norm scales (``Context(freeze=True)``,
:mod:`acdc_engine.patching.frozen`): gradients flow only through attention values and the
linear parts; the values are unchanged (a :class:`~acdc_engine.patching.frozen.Freezer`
from another frozen run's ``freezer.replay()`` reuses that run's patterns and scales). The
hook point is ``PatchPlan.mlps`` in :mod:`acdc_engine.patching.mlp_hooks` (each family names
its ``mlp_module``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..errors import AcdcError
from ..patching import run
from ..patching.frozen import Freezer
from ..patching.plan import ALL, Context, PatchPlan, ReadOut
from .dictionary import Transcoders

__all__ = ["SplicedRun", "spliced_run", "check_transcoders", "adapter_of"]


@dataclass
class SplicedRun:
    """The result of :func:`spliced_run`.

    logits:  [b, k, vocab] at the readout's positions.
    acts:    per layer, the feature activations [b, p, n] (after ``edit``; live: they carry
             gradients when the run does).
    mlp_in:  per layer, the transcoders' inputs [b, p, d] (live).
    errors:  per layer, the error terms [b, p, d] added (zeros with ``errors=False``).
    mlp_out: per layer, the MLP's own output [b, p, d] (detached).
    freezer: the frozen run's :class:`~acdc_engine.patching.frozen.Freezer` (None unfrozen):
             pass ``freeze=run.freezer.replay()`` to rerun with these very patterns and scales.
    """

    logits: torch.Tensor
    acts: list = field(default_factory=list)
    mlp_in: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    mlp_out: list = field(default_factory=list)
    freezer: Freezer | None = None


def adapter_of(model_or_adapter):
    """The :class:`~acdc_engine.models.ModelAdapter` of a loaded model (or the adapter itself)."""
    return getattr(model_or_adapter, "adapter", model_or_adapter)


def _d_model(transcoders: Transcoders) -> int | None:
    """The width the transcoders read, where they say it."""
    d = getattr(transcoders, "d_model", None)
    if d is None and hasattr(transcoders, "layers"):
        d = transcoders.layers[0].d_in
    return d


def check_transcoders(adapter, transcoders: Transcoders, model_id: str | None = None,
                      source: str = "the transcoders") -> None:
    """Refuse, with one line naming ``source`` and the mismatch, transcoders that do not fit
    ``adapter``'s model: no MLPs, another layer count, another width, another model's name."""
    if not isinstance(transcoders, Transcoders):
        raise AcdcError(f"{source} is a {type(transcoders).__name__}, not transcoders (a "
                        "TranscoderSet or CrossLayerTranscoder)")
    if getattr(adapter, "attn_only", False):
        raise AcdcError(f"{source}: the model has no MLPs (attention-only), nothing to replace")
    if transcoders.n_layers != adapter.n_layers:
        raise AcdcError(f"{source} cover {transcoders.n_layers} layers; the model has "
                        f"{adapter.n_layers}")
    d = _d_model(transcoders)
    if d is not None and d != adapter.d_model:
        raise AcdcError(f"{source} read width {d}; the model's d_model is {adapter.d_model}")
    if hasattr(transcoders, "layers"):
        for i, t in enumerate(transcoders.layers):
            if t.d_in != adapter.d_model or t.d_out != adapter.d_model:
                raise AcdcError(f"{source}: layer {i}'s transcoder maps {t.d_in} -> {t.d_out}; "
                                f"the model's d_model is {adapter.d_model}")
    names = {getattr(transcoders, "model", None)} | \
        {getattr(t, "model", None) for t in getattr(transcoders, "layers", ())}
    names.discard(None)
    if model_id is not None and names and not any(_same_model(n, model_id) for n in names):
        raise AcdcError(f"{source} were trained on {sorted(names)[0]!r}, not on {model_id!r}")


def _same_model(name: str, model_id: str) -> bool:
    """Do a dictionary's ``model`` name and a loaded model's id name the same model (an id may
    be a path ending in the name)?"""
    a, b = str(name).rstrip("/"), str(model_id).rstrip("/")
    return a == b or a.split("/")[-1] == b.split("/")[-1]


class Splice:
    """The ``PatchPlan.mlps`` callable of one spliced run: it records each layer's input,
    activations, error and own output (see :func:`spliced_run`)."""

    def __init__(self, transcoders: Transcoders, errors, edit: Callable | None):
        self.tc, self.errors, self.edit = transcoders, errors, edit
        n = transcoders.n_layers
        self.acts, self.mlp_in = [None] * n, [None] * n
        self.err, self.mlp_out = [None] * n, [None] * n

    def __call__(self, layer: int, mlp_in: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        tc = self.tc
        acts = tc.encode(layer, mlp_in)  # [b, p, n]
        self.mlp_in[layer], self.mlp_out[layer] = mlp_in, out.detach()
        if self.errors is True:  # the transcoders' miss on this input, before any edit
            self.acts[layer] = acts
            err = (out - tc.decode(layer, self.acts)).detach()
        elif self.errors is False:
            err = torch.zeros_like(out)
        else:
            err = self.errors[layer]
        if self.edit is not None:
            acts = self.edit(layer, acts)
        self.acts[layer], self.err[layer] = acts, err
        return tc.decode(layer, self.acts) + err


def spliced_run(adapter, input_ids: torch.Tensor, transcoders: Transcoders, *,
                errors: bool | Sequence[torch.Tensor] = True, edit: Callable | None = None,
                freeze: bool | Freezer = False, readout: ReadOut = ALL) -> SplicedRun:
    """Run ``adapter``'s model (an adapter or a loaded model) on ``input_ids`` [b, p] with its
    MLPs replaced by ``transcoders`` (see the module docstring for ``errors``, ``edit`` and
    ``freeze``); the logits at ``readout``'s positions and each layer's activations, inputs,
    error terms and MLP outputs."""
    adapter = adapter_of(adapter)
    check_transcoders(adapter, transcoders)
    if not (errors is True or errors is False):
        if len(errors) != transcoders.n_layers:
            raise AcdcError(f"errors: {len(errors)} per-layer tensors for "
                            f"{transcoders.n_layers} layers")
    splice = Splice(transcoders, errors, edit)
    freezer = freeze if isinstance(freeze, Freezer) else Freezer() if freeze else None
    context = Context() if freezer is None else Context(fuse=False, freeze=freezer)
    logits = run(adapter, input_ids, PatchPlan(mlps=splice), readout, context)
    return SplicedRun(logits, splice.acts, splice.mlp_in, splice.err, splice.mlp_out, freezer)
