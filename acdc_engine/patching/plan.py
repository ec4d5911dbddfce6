"""What a patched run computes and how, as three objects instead of keywords and switches.

    PatchPlan  what the run changes: the edge ``mask`` (1 keeps, 0 removes), what a removed edge's
               source becomes (``ablated`` outputs, or a fixed ``delta``), replaced ``embed``dings
               (EAP-IG's interpolation), per-token position-group ``labels`` for a 3-D mask,
               replaced MLP ``neurons`` (:class:`NeuronPatch` per layer), and replaced MLP
               outputs (``mlps``: the replacement model's transcoders).
    ReadOut    what it reads: the logits at every position (:data:`ALL`), at the last one
               (:data:`LAST`), or at given positions per example (:meth:`ReadOut.at`);
               :meth:`ReadOut.of` a batch reads its read positions ("last only" detected
               when the batch is built).
    Context    how it runs: the clean prefix to resume from, the workspace of the fused
               kernels, whether they are used (``fuse``), the node fast path, where a
               gradient run's reader gradients go (``grad_sink``), and whether attention
               patterns and norm scales are frozen for gradients (``freeze``). Every field
               changes the work, never the result beyond float rounding (the float64 audits
               check each; ``freeze`` changes gradients only).

:func:`acdc_engine.patching.run` takes them: ``run(adapter, ids, plan, readout, context)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .prefix import Prefix
from .workspace import Workspace

__all__ = ["PatchPlan", "NeuronPatch", "ReadOut", "Context", "ALL", "LAST", "NO_PATCH",
           "DEFAULT"]


@dataclass(frozen=True)
class PatchPlan:
    """What a run changes (every field optional; the empty plan is the model's own run).

    mask:    [n_writers, n_readers] (1 keeps an edge, 0 removes it), or [n_writers, n_readers,
             n_groups] for position-aware edges with ``labels``. If it requires grad, backward
             fills ``mask.grad`` (or the context's ``grad_sink``).
    ablated: [n_writers, batch or 1, pos, d_model] writer outputs that replace removed edges'
             sources (None: zero ablation).
    delta:   [n_writers, batch, pos, d_model] a fixed ``this - ablated`` (EAP-IG), instead of
             this run's outputs minus ``ablated``.
    embed:   [batch, pos, d_model] replaces the embeddings (EAP-IG's interpolation).
    labels:  [batch, pos] long: each token's position group (a 3-D mask's last index).
    neurons: layer -> :class:`NeuronPatch`: MLP neurons of that layer replaced (the neuron
             level; the family's ``mlp_out_proj`` hook point).
    mlps:    a callable ``(layer, mlp_in, mlp_out) -> out`` replacing every MLP node's output
             [b, p, d]: ``mlp_in`` is what the family's ``mlp_module(layer)`` received (the
             MLP's input after its norm: a transcoder's input), ``mlp_out`` the MLP's own
             output (:func:`acdc_engine.features.splice.spliced_run` builds one).
    """

    mask: torch.Tensor | None = None
    ablated: torch.Tensor | None = None
    delta: torch.Tensor | None = None
    embed: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    neurons: dict | None = None
    mlps: object | None = None

    @property
    def grad(self) -> bool:
        """Backward fills the mask's gradient (the mask requires grad)."""
        return self.mask is not None and self.mask.requires_grad


@dataclass(frozen=True)
class NeuronPatch:
    """One layer's MLP neurons, replaced in the run: the hidden activation ``h`` [b, p, d_mlp]
    (the input of the family's ``mlp_out_proj``) becomes ``source + keep * (h - source)``.

    keep:   [d_mlp]: 1 keeps a neuron, 0 replaces it by ``source`` (fractions interpolate; it
            may require grad: its gradient is each neuron's attribution).
    source: [b or 1, p, d_mlp] the replacing values (the corrupted run's, their mean), or None
            for zero.
    """

    keep: torch.Tensor
    source: torch.Tensor | None = None


@dataclass(frozen=True)
class ReadOut:
    """Which logits a run unembeds: ``positions`` [batch, k] long (the final residual there:
    [batch, k, vocab]), or ``last`` (the last position: [batch, 1, vocab]), or neither (every
    position: [batch, pos, vocab]). No position at all (``positions`` [batch, 0]) unembeds
    nothing (:func:`~acdc_engine.patching.writer_outputs`)."""

    positions: torch.Tensor | None = None
    last: bool = False

    @staticmethod
    def at(positions: torch.Tensor | None) -> ReadOut:
        """The logits at ``positions`` [batch, k]; every position when None."""
        return ReadOut(positions=positions)

    @staticmethod
    def of(batch) -> ReadOut:
        """What a run of ``batch`` (a :class:`~acdc_engine.tasks.Batch`) reads: the logits at
        its read positions [B, k, vocab]; the last position's by a slice when that is the only
        one read (``batch.last_only``, detected when the batch is built)."""
        return LAST if batch.last_only else ReadOut(positions=batch.positions)

    def final(self, resid: torch.Tensor) -> torch.Tensor:
        """The final residual stream [b, p, d] at the read positions: [b, k or 1 or p, d]."""
        if self.positions is not None:
            idx = self.positions.to(resid.device)[:, :, None].expand(-1, -1, resid.shape[-1])
            return resid.gather(1, idx)
        return resid[:, -1:] if self.last else resid


ALL = ReadOut()
"""Every position's logits."""
LAST = ReadOut(last=True)
"""The last position's logits."""
NO_PATCH = PatchPlan()
"""The model's own run."""


@dataclass(frozen=True)
class Context:
    """How a run computes (the defaults are the fast, exact paths).

    prefix:        a :class:`~acdc_engine.patching.Prefix`: a run without gradients starts at
                   the first layer with a removed edge, from the clean run's residual stream
                   there (the ``acdc view`` session and ACDC's reference loop on position-aware
                   graphs use it).
    workspace:     the :class:`~acdc_engine.patching.workspace.Workspace` whose buffers the
                   fused kernels reuse (None: this thread's).
    fuse:          adapters may use the fused norm + q/k/v kernels (False: every reader
                   normalizes its own input, the reference path).
    node_fastpath: a writer whose every edge is removed writes its ablated output into the
                   residual stream once (False: the edge-by-edge path everywhere).
    grad_sink:     a :class:`~acdc_engine.patching.GradSink` (or a tensor [n_readers, batch,
                   pos, d_model]): backward adds every reader input's gradient there instead of
                   filling ``mask.grad`` (the mask must still require grad).
    freeze:        attention patterns and norm scales are constants for gradients (the
                   replacement model of circuit tracing; :mod:`acdc_engine.patching.frozen`):
                   the same values, gradients through values and linear parts only (the fused
                   kernels are off: the norm modules must be called). A
                   :class:`~acdc_engine.patching.frozen.Freezer` records the constants (or,
                   from :meth:`~acdc_engine.patching.frozen.Freezer.replay`, reuses another
                   run's: frozen in value too).
    """

    prefix: Prefix | None = None
    workspace: Workspace | None = None
    fuse: bool = True
    node_fastpath: bool = True
    grad_sink: object | None = None
    freeze: object = False

    def resolved_workspace(self) -> Workspace:
        """The workspace a run hands its adapter: this context's (or this thread's), marked
        unfused when ``fuse`` is off or the run is frozen."""
        ws = self.workspace if self.workspace is not None else Workspace.for_thread()
        return ws if self.fuse and not self.freeze else ws.unfused()


DEFAULT = Context()
"""The fast paths, this thread's workspace, no prefix, no sink."""
