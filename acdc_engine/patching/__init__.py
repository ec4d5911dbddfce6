"""The patched forward pass: the one mechanism every edge-level quantity comes from.

Public: :func:`run` (a patched run's logits), :func:`run_with_writers` (and every writer's
output), :func:`writer_outputs` (the writer outputs alone), taking a :class:`PatchPlan` (what the
run changes), a :class:`ReadOut` (which logits it reads) and a :class:`Context` (how it
computes); :class:`Ablation` / :data:`ABLATIONS` (what a removed edge's source is replaced by);
:class:`Prefix` (the clean run's residual stream, to start runs at the first intervened
layer); :class:`GradSink` / :func:`edge_grads` (EAP-IG's summed reader gradients);
:class:`Workspace` (the fused kernels' storage). The mechanism is documented once, in
:mod:`.forward`.

The forward's parts live in this package, each in one module::

    forward.py         run, run_with_writers, writer_outputs: the forward itself (_Pass)
    plan.py            PatchPlan, ReadOut, Context: what to compute and how
    reads.py           a reader group's patched input and its backward's edge products
    workspace.py       the fused kernels' storage: backward buffer, spare row, factor recording
    norms.py           kernels a family calls: shared norm, fused norm + q/k/v projections
    head_writes.py     kernels a family calls: the heads' writes formed in the writer buffer
    reader_factors.py  EAP-IG's q/k/v reader gradients as factors
    grad_sink.py       where a gradient run's reader gradients go (GradSink, edge_grads)
    prefix.py          the clean run's residual stream kept for reuse (Prefix)
    token_groups.py    per-token position groups of a position-aware mask
    ablation.py        Ablation: corrupted, mean or zero
    mlp_hooks.py       the MLP node's hook points: neurons, and its replacement (transcoders)
    frozen.py          frozen attention patterns and norm scales (Context(freeze=...), Freezer)

Where to add a new kind of reader or hook point: ``forward.py`` (:class:`forward._Pass`; and,
if ACDC must see it, ``scoring/acdc/engine.py``, the second forward; docs/design.md).
"""

from .ablation import ABLATIONS, Ablation
from .forward import run, run_with_writers, writer_outputs
from .grad_sink import GradSink, edge_grads
from .plan import ALL, DEFAULT, LAST, NO_PATCH, Context, NeuronPatch, PatchPlan, ReadOut
from .prefix import Prefix
from .workspace import Workspace

__all__ = ["run", "run_with_writers", "writer_outputs", "PatchPlan", "NeuronPatch", "ReadOut",
           "Context",
           "ALL", "LAST", "NO_PATCH", "DEFAULT", "Ablation", "ABLATIONS", "Prefix",
           "GradSink", "edge_grads", "Workspace"]
