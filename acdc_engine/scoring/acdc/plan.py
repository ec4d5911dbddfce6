"""What testing the edges into one node re-runs: a :class:`NodePlan` of small steps.

When edges into ``v`` are tested, only ``v`` and the writers on a path of kept edges from ``v``
to the logits can change the metric. The plan lists them (``rerun``), groups the downstream
ones into one step per layer (the heads to re-run, then the MLP), says which are needed at
every position and which at the last one only (when the task reads the last position alone;
with other read positions the logits read every position), and precomputes how each re-run
reader mixes the re-run writers (:class:`Mixer`). A plan is fixed while ``v`` is tested.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np
import torch

from ...graph import EdgeKind, Graph, NodeKind
from .order import Topology

__all__ = ["Mixer", "HeadGroup", "HeadsStep", "MlpStep", "NodePlan", "Planner", "reads_all"]


def reads_all(kind: EdgeKind, last_query_ok: bool) -> bool:
    """Does a reader through input ``kind`` need its writers at every position? Keys and values
    do; a query does unless the kernel takes the last query alone; MLPs read position-wise."""
    return kind in (EdgeKind.K, EdgeKind.V) or (kind is EdgeKind.Q and not last_query_ok)


@dataclass(frozen=True)
class Mixer:
    """How to form re-run readers' inputs: ``fixed_part[rows] + coef @ rerun_out[cols]`` (the
    engine's fixed part of their inputs plus the re-run writers' outputs they read)."""

    rows: slice  # rows of the node's re-run readers (the engine's ``fixed_part``)
    cols: torch.Tensor  # [n_cols] long: re-run writers with a kept edge into those rows
    coef: torch.Tensor  # [n_rows, n_cols] their coefficients (1 = kept edge)


@dataclass(frozen=True)
class HeadGroup:
    """Heads of one layer re-run together: all at every position, or all at the last only."""

    heads: list[int]  # head indices in the layer
    rows: list[int]  # their places among the layer's re-run heads (q/k/v input rows)
    outs: list[int]  # their rows among the re-run writers (rerun_out)
    last: bool  # needed at the last position only


@dataclass
class HeadsStep:
    """Re-run some heads of ``layer`` (their q, k, v inputs are reader ``rows``)."""

    layer: int
    groups: list[HeadGroup]
    rows: slice
    n_up: int  # re-run writers upstream of the layer (a prefix of NodePlan.rerun)
    mixer: Mixer | None = None


@dataclass
class MlpStep:
    """Re-run the MLP of ``layer`` (re-run writer ``out``; its input is reader ``rows``)."""

    layer: int
    out: int
    last: bool  # needed at the last position only
    rows: slice
    n_up: int
    mixer: Mixer | None = None


@dataclass
class NodePlan:
    """Everything fixed while edges into node ``v`` are tested."""

    v: int
    is_logits: bool
    rerun: list[int]  # writers re-run per candidate, in order: v (unless logits), downstream
    need_all: dict[int, bool]  # per re-run writer: needed at every position (else the last)
    steps: list[HeadsStep | MlpStep]  # downstream re-runs, by layer
    readers: list[int]  # reader slots of the steps, then the logits
    logit_mixer: Mixer
    last_only_rows: list[int]  # re-run writers computed at the last position only
    v_slots: list[int]  # v's input slots
    v_last: dict[int, bool]  # per input slot of v: only its last position matters


class Planner:
    """Makes the :class:`NodePlan` of a node under a mask ``keep`` ([W, R] numpy bool)."""

    def __init__(self, g: Graph, last_query_ok: bool, device, dtype,
                 all_positions: bool = False):
        self.g, self.last_query_ok = g, last_query_ok
        self.all_positions = all_positions  # the logits read other positions than the last
        self.dev, self.dtype = device, dtype
        self.topo = Topology(g)
        self.valid = g.valid.numpy()
        self.slot_node = self.topo.slot_node
        self.slot_kind = [kind for _, kind in g.readers()]  # [R] EdgeKind of each slot

    def plan(self, keep: np.ndarray, v: int) -> NodePlan | None:
        """The plan for testing edges into ``v``; None if ``v`` is dead (cannot reach logits)."""
        g = self.g
        adj = self.topo.adjacency(keep)
        alive = self.topo.alive(adj)
        if not alive[v]:
            return None
        is_logits = v == len(g.nodes) - 1
        down = [] if is_logits else self.topo.downstream(adj, alive, v)
        rerun = ([] if is_logits else [v]) + down
        need_all = self._positions(keep, rerun)
        steps, readers = self._steps(rerun, down, need_all)
        logit_row = len(readers)
        readers.append(g.logits_slot)
        # coefficients of the re-run writers in the re-run readers (fixed while testing v)
        kc = keep[rerun][:, readers] & self.valid[rerun][:, readers]  # [n_C, n_R]
        for step in steps:
            step.mixer = self._mixer(kc, step.rows, step.n_up)
        v_slots = g.node_slots(v)
        # which of v's input positions matter: the last only, unless v's output is needed
        # everywhere (k and v inputs of a head always need every position)
        v_all = self.all_positions if is_logits else need_all[v]
        return NodePlan(
            v=v, is_logits=is_logits, rerun=rerun, need_all=need_all, steps=steps,
            readers=readers,
            logit_mixer=self._mixer(kc, slice(logit_row, logit_row + 1), len(rerun)),
            last_only_rows=[i for i, u in enumerate(rerun) if not need_all[u]],
            v_slots=v_slots,
            v_last={s: not (v_all or reads_all(self.slot_kind[s], self.last_query_ok))
                    for s in v_slots})

    def _steps(self, rerun: list[int], down: list[int],
               need_all: dict[int, bool]) -> tuple[list[HeadsStep | MlpStep], list[int]]:
        """Per layer the downstream heads to re-run, then the MLP; and the slots they read."""
        g = self.g
        pos = {u: i for i, u in enumerate(rerun)}
        steps: list[HeadsStep | MlpStep] = []
        readers: list[int] = []
        by_layer: dict[int, list[int]] = {}
        for u in down:
            by_layer.setdefault(g.nodes[u].layer, []).append(u)
        for layer in sorted(by_layer):
            us = by_layer[layer]
            heads = [u for u in us if g.nodes[u].kind is NodeKind.ATTN]
            if heads:
                slots = [g.reader_slot(g.nodes[u], kind)
                         for kind in (EdgeKind.Q, EdgeKind.K, EdgeKind.V) for u in heads]
                groups = []
                for last in (False, True):
                    sel = [i for i, u in enumerate(heads) if need_all[u] != last]
                    if sel:
                        groups.append(HeadGroup([g.nodes[heads[i]].head for i in sel], sel,
                                                [pos[heads[i]] for i in sel], last))
                steps.append(HeadsStep(layer, groups,
                                       slice(len(readers), len(readers) + len(slots)),
                                       bisect.bisect_left(rerun, g.attn_upstream(layer))))
                readers += slots
            mlps = [u for u in us if g.nodes[u].kind is NodeKind.MLP]
            if mlps:
                steps.append(MlpStep(layer, pos[mlps[0]], not need_all[mlps[0]],
                                     slice(len(readers), len(readers) + 1),
                                     bisect.bisect_left(rerun, g.mlp_upstream(layer))))
                readers.append(g.mlp_slot(layer))
        return steps, readers

    def _positions(self, keep: np.ndarray, rerun: list[int]) -> dict[int, bool]:
        """For each re-run writer: is its output needed at every position (else: the last)?"""
        need: dict[int, bool] = {}
        last_node = len(self.g.nodes) - 1
        for u in reversed(rerun):
            cols = np.nonzero(keep[u] & self.valid[u])[0]
            na = False
            for s in cols:
                x = int(self.slot_node[s])
                if x == last_node and self.all_positions:
                    na = True  # the logits read other positions than the last
                    break
                if x == last_node or (x not in need):
                    continue  # the logits (last position), or a node that cannot matter
                if reads_all(self.slot_kind[s], self.last_query_ok) or need[x]:
                    na = True
                    break
            need[u] = na
        return need

    def _mixer(self, kc: np.ndarray, rows: slice, n_up: int) -> Mixer:
        """Only the re-run writers with a kept edge into reader ``rows`` (a sparse circuit has
        few), and their coefficients."""
        sub = kc[:n_up, rows]  # [n_up, n_rows]
        cols = np.nonzero(sub.any(1))[0]
        coef = torch.from_numpy(sub[cols].astype(np.float32)).to(self.dev, self.dtype)
        return Mixer(rows, torch.from_numpy(cols).to(self.dev), coef.T.contiguous())
