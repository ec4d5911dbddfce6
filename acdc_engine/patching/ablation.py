"""What replaces a removed edge's source: the corrupted run's writer outputs (the default),
their mean over the task's corrupted prompts, or zero (:class:`Ablation`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import UnknownNameError
from ..models.adapter import ModelAdapter
from .forward import writer_outputs

__all__ = ["Ablation", "ABLATIONS"]

ABLATIONS = ("corrupted", "mean", "zero")
"""The kinds of :class:`Ablation`."""


@dataclass
class Ablation:
    """What replaces a removed edge's source: ``corrupted`` (default), ``mean`` or ``zero``.

    ``mean`` averages the writer outputs over the task's corrupted prompts, per position, for
    each prompt length in the dataset (prompts of one length share a mean).
    """

    kind: str = "corrupted"
    _means: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.kind not in ABLATIONS:
            raise UnknownNameError("ablation", self.kind, list(ABLATIONS))

    def fit(self, adapter: ModelAdapter, batches) -> Ablation:
        """Compute the mean activations (only for ``mean``) over ``batches``."""
        if self.kind != "mean":
            return self
        sums: dict[int, tuple[torch.Tensor, int]] = {}
        with torch.no_grad():
            for b in batches:
                acts = writer_outputs(adapter, b.corrupted)
                p = b.corrupted.shape[1]
                s, n = sums.get(p, (0, 0))
                sums[p] = (s + acts.sum(1, keepdim=True), n + len(b))
        self._means = {p: s / n for p, (s, n) in sums.items()}
        return self

    def activations(self, adapter: ModelAdapter, batch) -> torch.Tensor | None:
        """The ablated writer outputs for ``batch``: [n_writers, batch or 1, pos, d_model]."""
        if self.kind == "zero":
            return None
        if self.kind == "mean":
            p = batch.corrupted.shape[1]
            if p not in self._means:
                raise RuntimeError("mean ablation needs .fit() on the task's batches first")
            return self._means[p]
        with torch.no_grad():
            acts = writer_outputs(adapter, batch.corrupted)
        return acts
