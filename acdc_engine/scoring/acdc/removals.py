"""Candidate removal sets as coefficient matrices: per input slot of the node under test, which
of its edges each candidate removes (the engine subtracts ``coef @ (out - abl)`` of their
writers from the slot's current input, :class:`.engine.Engine`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["SlotRemovals", "slot_removals"]


@dataclass(frozen=True)
class SlotRemovals:
    """Which edges into one input slot of ``v`` each candidate removes."""

    coef: torch.Tensor  # [c, n] 1 where candidate j removes edge i
    writers: torch.Tensor  # [n] long: each edge's writer


def slot_removals(sets: list[list[int]], slots: list[int], w_of: list[int], r_of: list[int],
                  device, dtype) -> dict[int, SlotRemovals]:
    """Per input slot in ``slots`` (those of ``v``) that some candidate touches: which of its
    edges each candidate (a list of edge ids in ``sets``) removes. ``w_of``, ``r_of``: per
    edge, its writer and reader slot (:attr:`Graph.coords`)."""
    c = len(sets)
    by_slot: dict[int, list[int]] = {s: [] for s in slots}
    for es in sets:
        for e in es:
            if e not in by_slot[r_of[e]]:
                by_slot[r_of[e]].append(e)
    out = {}
    for s, es in by_slot.items():
        if es:
            col = {e: i for i, e in enumerate(es)}
            coef = np.zeros((c, len(es)), dtype=np.float32)
            for j, cand in enumerate(sets):
                for e in cand:
                    if r_of[e] == s:
                        coef[j, col[e]] = 1
            out[s] = SlotRemovals(torch.from_numpy(coef).to(device, dtype),
                                  torch.tensor([w_of[e] for e in es], device=device))
    return out
