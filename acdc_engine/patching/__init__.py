"""The patched forward pass: the one mechanism every edge-level quantity comes from.

Public: :func:`run` (a patched run's logits, and its writer outputs on request),
:func:`writer_outputs` (the writer outputs alone), :class:`Ablation` / :data:`ABLATIONS` (what a
removed edge's source is replaced by), :func:`reuse_prefix` / :class:`Prefix` (start runs at the
first intervened layer), and :class:`GradSink` / :func:`edge_grads` (EAP-IG's summed reader
gradients). The mechanism is documented once, in :mod:`.forward`.

The forward's private parts live beside it, not in the package's top level::

    forward.py       run, writer_outputs, Ablation: the forward itself
    reads.py         a reader group's patched input and its backward's edge products
    grad_sink.py     where a gradient run's reader gradients go (GradSink, edge_grads)
    prefix.py        the clean run's residual stream kept for reuse (reuse_prefix)
    token_groups.py  per-token position groups of a position-aware mask

Where to add a new kind of reader or hook point: ``forward.py`` (and, if ACDC must see it,
``scoring/acdc/engine.py``, the second forward; docs/design.md).
"""

from .forward import ABLATIONS, Ablation, run, writer_outputs
from .grad_sink import GradSink, edge_grads
from .prefix import Prefix, reuse_prefix

__all__ = ["run", "writer_outputs", "Ablation", "ABLATIONS", "Prefix", "reuse_prefix",
           "GradSink", "edge_grads"]
