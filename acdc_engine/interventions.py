"""Interventions on a running model, through the one patched forward (no second mechanism).

An :class:`Intervention` replaces what a node (all of its outgoing edges) or a single edge
carries with the same node's output from another run::

    ablate a3.1 with zero | mean | corrupted     the head writes its ablated value to everyone
    freeze m2                                    the MLP's output is pinned to the clean run's,
                                                 whatever happens upstream of it
    patch a5.0->logits from corrupted            only that edge reads the corrupted value

In :func:`acdc_engine.patching.run` terms an intervention on writer ``u`` sets ``mask[u, v] = 0``
for the readers ``v`` it concerns and puts the source's output of ``u`` in row ``u`` of the
ablated tensor; every reader that is not intervened on keeps reading ``u``'s live output.
Interventions stack (:class:`InterventionStack`); a later one on the same writer replaces the
source of an earlier one (one writer has one replacement value per run).

    stack = InterventionStack(problem.graph)
    stack.push(Intervention.parse("ablate a1.0 zero"))
    values = evaluate_interventions(problem, stack)   # per-example metric, [n_examples]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .errors import AcdcError
from .graph import Graph, NodeKind, parse_edge, parse_node
from .patching import writer_outputs
from .problem import Problem

__all__ = ["Intervention", "InterventionStack", "SOURCES", "evaluate_interventions",
           "source_activations"]

SOURCES = ("zero", "mean", "corrupted", "clean")
"""Where an intervened writer's output comes from: zero, the mean over corrupted prompts, the
corrupted run, or the clean run (freeze)."""
VERBS = {"ablate": "zero", "freeze": "clean", "patch": "corrupted"}


@dataclass(frozen=True)
class Intervention:
    """``verb`` (ablate, freeze, patch) on ``target`` (a node or an edge name) from ``source``."""

    verb: str
    target: str
    source: str

    def __post_init__(self):
        if self.verb not in VERBS:
            raise AcdcError(f"unknown intervention {self.verb!r} (use {', '.join(VERBS)})")
        if self.source not in SOURCES:
            raise AcdcError(f"unknown source {self.source!r} (use {', '.join(SOURCES)})")
        try:
            if "->" in self.target:
                parse_edge(self.target)
            else:
                parse_node(self.target)
        except ValueError as e:
            raise AcdcError(str(e)) from None

    @classmethod
    def parse(cls, text: str) -> Intervention:
        """``"ablate a3.1"``, ``"ablate m2 mean"``, ``"freeze m2"``, ``"patch a5.0 from
        corrupted"``: verb, target, optional (``from``) source."""
        words = [w for w in text.split() if w != "from"]
        if len(words) not in (2, 3):
            raise AcdcError(f"cannot read intervention {text!r} (e.g. 'ablate a3.1 zero', "
                            "'freeze m2', 'patch a5.0->logits from corrupted')")
        verb, target = words[0], words[1]
        if verb not in VERBS:
            raise AcdcError(f"unknown intervention {verb!r} (use {', '.join(VERBS)})")
        return cls(verb, target, words[2] if len(words) == 3 else VERBS[verb])

    def __str__(self) -> str:
        return f"{self.verb} {self.target} {self.source}"


@dataclass
class InterventionStack:
    """Interventions applied together, in order (the viewer's undo pops ``items``)."""

    graph: Graph
    items: list[Intervention] = field(default_factory=list)

    def push(self, iv: Intervention) -> None:
        self._slots(iv)  # a target the graph does not have fails now
        self.items.append(iv)

    def clear(self) -> None:
        self.items.clear()

    def _slots(self, iv: Intervention) -> tuple[int, list[int]]:
        """(writer index, reader slots) the intervention removes."""
        g = self.graph
        if "->" in iv.target:
            e = g.edge(iv.target)
            return g.writer_index(e.src), [g.reader_slot(e.dst, e.kind)]
        node = g.node(iv.target)
        if node.kind is NodeKind.LOGITS:
            raise AcdcError("the logits write nothing to intervene on; intervene on an edge "
                            "into them (e.g. 'ablate a1.0->logits')")
        w = g.writer_index(node)
        return w, [int(s) for s in g.valid[w].nonzero()[:, 0]]

    def plan(self) -> tuple[torch.Tensor, dict[int, str]]:
        """The dense mask ``[n_writers, n_readers]`` and the source of each intervened writer."""
        g = self.graph
        mask = torch.ones(g.n_writers, g.n_readers)
        sources: dict[int, str] = {}
        for iv in self.items:
            w, slots = self._slots(iv)
            mask[w, slots] = 0
            sources[w] = iv.source
        return mask, sources


def source_activations(problem: Problem, i: int, source: str) -> torch.Tensor | None:
    """Writer outputs of batch ``i`` from ``source``: [n_writers, b or 1, pos, d] (None: zero)."""
    batch, adapter = problem.batches[i], problem.model.adapter
    if source == "zero":
        return None
    if source == "corrupted" and problem.ablation.kind == "corrupted":
        return problem.ablated(i)
    if source == "mean" and problem.ablation.kind == "mean":
        return problem.ablated(i)
    with torch.no_grad():
        if source == "mean":  # the mean over this batch's corrupted prompts, per position
            return writer_outputs(adapter, batch.corrupted).mean(1, keepdim=True)
        ids = batch.clean if source == "clean" else batch.corrupted
        acts = writer_outputs(adapter, ids)
    return acts


@torch.no_grad()
def evaluate_interventions(problem: Problem, stack: InterventionStack,
                           return_logits: bool = False):
    """Per-example metric under the stack's interventions, ``[n_examples]`` in batch order (and
    the logits at each row's last read position ``[n_examples, vocab]`` with
    ``return_logits``)."""
    model = problem.model
    mask, sources = stack.plan()
    mask = mask.to(model.device, model.dtype)
    values, logits_all = [], []
    for i, batch in enumerate(problem.batches):
        ablated = None
        kinds = set(sources.values())
        if len(kinds) == 1:
            # one source: its activations as they are (rows outside ``sources`` keep every
            # edge, so what they hold is never read); zero ablation needs none
            ablated = source_activations(problem, i, kinds.pop())
        elif sources:
            b, p = batch.clean.shape
            ablated = torch.zeros(problem.graph.n_writers, b, p, model.adapter.d_model,
                                  device=model.device, dtype=model.dtype)
            for src in set(sources.values()):
                acts = source_activations(problem, i, src)
                if acts is None:
                    continue
                rows = [w for w, s in sources.items() if s == src]
                ablated[rows] = acts[rows].expand(len(rows), b, p, -1)
        logits = problem.logits(batch, mask if sources else None, ablated)  # [b, k, vocab]
        values.append(problem.metric.score(logits, batch).float().cpu())
        if return_logits:
            logits_all.append(logits[:, -1].float().cpu())
    out = torch.cat(values)
    return (out, torch.cat(logits_all)) if return_logits else out
