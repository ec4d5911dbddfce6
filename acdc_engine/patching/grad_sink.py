"""Where a gradient run's reader-input gradients go when they are summed over runs (EAP-IG).

EAP-IG's steps share one ``delta`` per writer, so instead of forming every step's edge gradients
(one product of ``delta`` with each reader's input gradient per step), the patched forward's
backward hands each reader group's input gradients (the q/k/v inputs of a layer's heads, an
MLP's input, the logits' input) to a :class:`GradSink`, and the products are formed once at the
end (:func:`edge_grads`), group by group.

A sink made without a tensor, ``GradSink()``, keeps one ``[s, b, p, d]`` tensor per reader
group, made by the group's first gradient (written, not added to zeros), and lets the patched
forward record a layer's q/k/v gradients as factors instead
(:mod:`acdc_engine.patching.reader_factors`), formed when :meth:`GradSink.rows` asks for them: no
``[n_readers, b, p, d]`` tensor is ever held.
``GradSink(tensor)`` adds into ``tensor`` [n_readers, b, p, d] as it is (the SAE tools read it).
"""

from __future__ import annotations

import torch

from .. import buffers
from .reader_factors import ReaderFactors
from .token_groups import TokenGroups

__all__ = ["GradSink", "edge_grads"]


class GradSink:
    """Sums reader-input gradients over runs, by reader group (keyed by its first column)."""

    def __init__(self, tensor: torch.Tensor | None = None):
        self.tensor = tensor  # plain: every reader's sum, [n_readers, b, p, d]
        self._dense: dict[int, torch.Tensor] = {}  # no tensor: group start -> [s, b, p, d]
        self._factors: dict[int, ReaderFactors] = {}
        self.factors_ok = tensor is None  # may record q/k/v readers as factors

    def add(self, start: int, parts: tuple) -> None:
        """Add the gradients of the consecutive readers ``start, start + 1, ...``: ``parts``,
        one [size, b, p, d] tensor per part (all of them as one tensor, or q, k and v)."""
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
            torch.cat(parts, out=have)
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


def _reader_groups(g):
    """(writers upstream, reader columns) for each group of readers that share a prefix."""
    for layer in range(g.n_layers):
        yield g.attn_upstream(layer), g.attn_slots(layer)
        if not g.attn_only:
            slot = g.mlp_slot(layer)
            yield g.mlp_upstream(layer), slice(slot, slot + 1)
    yield g.n_writers, slice(g.logits_slot, g.logits_slot + 1)


def edge_grads(g, delta: torch.Tensor, sink: GradSink,
               labels: torch.Tensor | None = None, n_groups: int = 1) -> torch.Tensor:
    """``[n_writers, n_readers]`` edge gradients ``sum delta_u . sink_v`` from a ``grad_sink``
    (``[n_writers, n_readers, n_groups]``, summed per group, with position ``labels``).

    Equal to the ``mask.grad`` the runs that filled ``sink`` would have summed, for one GEMM
    per reader group in total instead of one per run; the sink forms one group's gradients
    at a time.
    """
    groups = None if labels is None else TokenGroups(labels, n_groups)
    shape = (g.n_writers, g.n_readers) + (() if groups is None else (n_groups,))
    out = torch.zeros(shape, device=delta.device, dtype=torch.float32)
    for n_up, cols in _reader_groups(g):
        s = sink.rows(cols)  # [s, b, p, d], or None: nothing reached these readers
        if s is None:
            continue
        if groups is not None:
            out[:n_up, cols] = groups.products(delta[:n_up], s)
        elif s.is_contiguous():
            out[:n_up, cols] = (delta[:n_up].reshape(n_up, -1) @ s.reshape(len(s), -1).T).float()
        else:  # position-major (ReaderFactors.gradients): one [n, d] @ [d, s] per position
            dm = s.shape[-1]
            x = delta[:n_up].reshape(n_up, -1, dm).transpose(0, 1)  # [T, n, d]
            y = s.reshape(len(s), -1, dm).permute(1, 2, 0)  # [T, d, s]
            out[:n_up, cols] = torch.bmm(x, y).sum(0, dtype=torch.float32)
    return out
