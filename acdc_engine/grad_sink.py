"""Where a gradient run's reader-input gradients go when they are summed over runs (EAP-IG).

EAP-IG's steps share one ``delta`` per writer, so instead of forming every step's edge gradients
(one product of ``delta`` with each reader's input gradient per step), the patched forward's
backward hands each reader group's input gradients (the q/k/v inputs of a layer's heads, an
MLP's input, the logits' input) to a :class:`GradSink`, and the products are formed once at the
end (:func:`acdc_engine.patching.edge_grads`), group by group.

A sink from :meth:`GradSink.lazy` keeps one ``[s, b, p, d]`` tensor per reader group, made by
the group's first gradient (written, not added to zeros), and lets the patched forward record a
layer's q/k/v gradients as factors instead (:mod:`acdc_engine.models.reader_factors`), formed
when :meth:`GradSink.rows` asks for them: no ``[n_readers, b, p, d]`` tensor is ever held.
``GradSink(tensor)`` adds into ``tensor`` [n_readers, b, p, d] as it is (the SAE tools read it).
"""

from __future__ import annotations

import torch

from . import buffers
from .models.reader_factors import ReaderFactors

__all__ = ["GradSink"]


class GradSink:
    """Sums reader-input gradients over runs, by reader group (keyed by its first column)."""

    def __init__(self, tensor: torch.Tensor | None = None):
        self.tensor = tensor  # plain: every reader's sum, [n_readers, b, p, d]
        self._dense: dict[int, torch.Tensor] = {}  # lazy: group start -> [s, b, p, d]
        self._factors: dict[int, ReaderFactors] = {}
        self.factors_ok = tensor is None  # may record q/k/v readers as factors

    @classmethod
    def lazy(cls) -> GradSink:
        """A sink that holds only what its runs give it."""
        return cls()

    def add(self, start: int, grads: tuple, joined: torch.Tensor | None = None) -> None:
        """Add the gradients of the consecutive readers ``start, start + 1, ...`` (``grads``,
        one [size, b, p, d] tensor per part, or ``joined``, all of them as one tensor)."""
        parts = (joined,) if joined is not None else grads
        if self.tensor is not None:
            for g in parts:
                self.tensor[start : start + len(g)] += g
                start += len(g)
            return
        have = self._dense.get(start)
        if have is None:  # the group's first gradient: written, never zero-filled
            g0 = parts[0]
            have = buffers.empty((sum(len(g) for g in parts), *g0.shape[1:]), dtype=g0.dtype,
                                 device=g0.device)
            torch.cat(parts, out=have) if len(parts) > 1 else have.copy_(g0)
            self._dense[start] = have
            return
        row = 0
        for g in parts:
            have[row : row + len(g)] += g
            row += len(g)

    def factors(self, start: int, anchor: torch.Tensor) -> ReaderFactors:
        """The factor record of the reader group at ``start`` (q/k/v of one layer), for a run
        whose graph ``anchor`` (a tensor that requires grad) belongs to."""
        rec = self._factors.setdefault(start, ReaderFactors())
        rec.anchor, rec.used = anchor, False
        return rec

    def rows(self, cols: slice) -> torch.Tensor | None:
        """The summed input gradients of the readers ``cols`` (one group), [s, b, p, d], or
        None when no run reached them (their sum is zero)."""
        if self.tensor is not None:
            return self.tensor[cols]
        dense, rec = self._dense.get(cols.start), self._factors.get(cols.start)
        formed = None if rec is None else rec.gradients()
        if formed is None or dense is None:
            return dense if formed is None else formed
        return formed.add_(dense)
