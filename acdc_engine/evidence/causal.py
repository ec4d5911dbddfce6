"""Causal evidence: activation patching over nodes x positions, node ablation, path patching.

    ap = activation_patching(problem)                   # .restored [n_nodes, pos]
    ab = node_ablation(problem, source="mean")          # per node: effect with its interval
    pp = path_patching(problem, "a0.1", "a2.0")         # the edge(s) sender -> receiver only

Every run is :func:`acdc_engine.patching.run` with a mask and a replacement tensor (directly,
or through :mod:`acdc_engine.interventions`); there is no second patching mechanism. Effects are
reported per example with bootstrap intervals (:mod:`.uncertainty`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import AcdcError
from ..graph import NodeKind
from ..interventions import Intervention, InterventionStack, evaluate_interventions
from ..interventions import source_activations
from ..patching import NO_PATCH, ReadOut, run_with_writers
from ..problem import Problem
from ..progress import progress_bar
from .uncertainty import Interval, bootstrap

__all__ = ["PatchingResult", "activation_patching", "AblationResult", "node_ablation",
           "PathResult", "path_patching"]


@dataclass
class PatchingResult:
    """Fraction of the clean-vs-corrupted metric gap restored by patching one node's clean
    output into the corrupted run, at one position (``restored[node, pos]``; positions are
    counted so that the last column is every prompt's last token) or at all positions
    (``restored_all[node]``). 1 = the clean behaviour, 0 = none of it."""

    nodes: list[str]
    restored: torch.Tensor  # [n_nodes, pos]
    restored_all: torch.Tensor  # [n_nodes]
    clean: float
    corrupted: float
    tokens: list[str] | None = None

    def as_dict(self) -> dict:
        return {"nodes": self.nodes, "restored": self.restored.tolist(),
                "restored_all": self.restored_all.tolist(), "clean": self.clean,
                "corrupted": self.corrupted, "tokens": self.tokens}


def _writer_nodes(problem: Problem, nodes) -> list[str]:
    g = problem.graph
    names = [n.name for n in g.writers] if nodes is None else list(nodes)
    for n in names:
        if g.node(n).kind is NodeKind.LOGITS:
            raise AcdcError("the logits write nothing to patch; name a writer node")
    return names


def _repeat(batch, k: int):
    """``batch`` stacked ``k`` times along the example axis (one copy per patch)."""
    return batch.repeat(k)


@torch.no_grad()
def activation_patching(problem: Problem, nodes: list[str] | None = None,
                        progress: bool = False, chunk: int = 8) -> PatchingResult:
    """Patch each node's clean output into the corrupted run, at each position and at all
    positions at once, and measure how much of the behaviour comes back (see
    :class:`PatchingResult`). Prompts of different lengths are aligned at their last token
    over the shortest length. ``chunk`` patches run together as one stacked batch."""
    g, model = problem.graph, problem.model
    names = _writer_nodes(problem, nodes)
    P = min(b.clean.shape[1] for b in problem.batches)
    sums = torch.zeros(len(names), P + 1, dtype=torch.float64)  # last column: all positions
    clean_total = corr_total = 0.0
    for i, batch in enumerate(progress_bar(problem.batches, desc="activation patching",
                                           enabled=progress)):
        clean_acts = source_activations(problem, i, "clean")  # [W, b, p, d]
        logits, corr_acts = run_with_writers(model.adapter, batch.corrupted, NO_PATCH,
                                             ReadOut.of(batch))  # [b, k, vocab]
        corr_total += float(problem.metric.score(logits, batch).sum())
        clean_total += float(problem.score(batch).sum())
        b, p = batch.clean.shape
        patches = [*range(p - P, p), None]  # one position each, then all positions
        for k, name in enumerate(names):
            w = g.writer_index(name)
            mask = torch.ones(g.n_writers, g.n_readers, device=model.device, dtype=model.dtype)
            mask[w, g.valid[w]] = 0
            for s in range(0, len(patches), chunk):
                part = patches[s : s + chunk]
                n = len(part)
                ablated = corr_acts.repeat(1, n, 1, 1)  # [W, n * b, p, d]
                for c, t in enumerate(part):
                    rows = slice(c * b, (c + 1) * b)
                    if t is None:
                        ablated[w, rows] = clean_acts[w]
                    else:
                        ablated[w, rows, t] = clean_acts[w, :, t]
                big = _repeat(batch, n)
                vals = problem.score(big, mask, ablated, ids=big.corrupted)
                vals = vals.double().cpu().view(n, b).sum(1)
                sums[k, s : s + n] += vals
    n = problem.n_examples
    clean, corr = clean_total / n, corr_total / n
    gap = clean - corr
    frac = (sums / n - corr) / (gap if gap != 0 else float("nan"))
    tokens = None
    tok = model.tokenizer
    if tok is not None and len({b.clean.shape[1] for b in problem.batches}) == 1:
        tokens = tok.convert_ids_to_tokens(problem.batches[0].clean[0].tolist())
    return PatchingResult(names, frac[:, :P].float(), frac[:, P].float(), clean, corr, tokens)


@dataclass
class AblationResult:
    """Per node: the metric change when the node's output is replaced by ``source``
    (ablated - full, mean over examples, with its bootstrap interval), and the share of the
    behaviour it removes (``fraction``: minus that change over the gap between the full model
    and every node ablated; 1 = all of it)."""

    nodes: list[str]
    effects: list[Interval]
    fraction: list[float]
    source: str
    full: float

    def as_dict(self) -> dict:
        return {"nodes": self.nodes, "effects": [e.as_dict() for e in self.effects],
                "fraction": self.fraction, "source": self.source, "full": self.full}

    def significant(self) -> list[str]:
        """Nodes whose interval excludes zero."""
        return [n for n, e in zip(self.nodes, self.effects) if e.excludes_zero()]


def node_ablation(problem: Problem, nodes: list[str] | None = None, source: str = "zero",
                  n_boot: int = 1000, progress: bool = False) -> AblationResult:
    """Ablate each node (every head and MLP by default) alone from ``source`` (zero, mean,
    corrupted) over all the problem's examples; effects with bootstrap intervals."""
    names = _writer_nodes(problem, nodes)
    stack = InterventionStack(problem.graph)
    full = evaluate_interventions(problem, stack)  # [n]
    everything = InterventionStack(problem.graph)
    for n in problem.graph.writers:
        everything.push(Intervention("ablate", n.name, source))
    gap = float(full.mean() - evaluate_interventions(problem, everything).mean())
    effects, fraction = [], []
    for name in progress_bar(names, desc="node ablation", enabled=progress):
        stack.clear()
        stack.push(Intervention("ablate", name, source))
        delta = evaluate_interventions(problem, stack) - full  # [n]
        effects.append(bootstrap(delta, n_boot=n_boot))
        fraction.append(-effects[-1].point / gap if gap else float("nan"))
    return AblationResult(names, effects, fraction, source, float(full.mean()))


@dataclass
class PathResult:
    """Path patching ``sender -> receiver``: the metric change when only the receiver reads
    the sender's ``source`` output (through ``edges``), with its interval, and as a fraction of
    the metric change when the sender is patched for every reader (``of_node``)."""

    sender: str
    receiver: str
    edges: list[str]
    effect: Interval
    node_effect: Interval
    source: str

    @property
    def of_node(self) -> float:
        return self.effect.point / self.node_effect.point if self.node_effect.point else \
            float("nan")

    def as_dict(self) -> dict:
        return {"sender": self.sender, "receiver": self.receiver, "edges": self.edges,
                "effect": self.effect.as_dict(), "node_effect": self.node_effect.as_dict(),
                "of_node": self.of_node, "source": self.source}


def path_patching(problem: Problem, sender: str, receiver: str, source: str = "corrupted",
                  kinds: str = "qkv", n_boot: int = 1000) -> PathResult:
    """Patch ``sender``'s output from ``source`` into ``receiver`` alone (its ``kinds`` inputs
    when it is a head), everything else clean: the direct path's share of the effect."""
    g = problem.graph
    s, r = g.node(sender), g.node(receiver)
    if r.kind is NodeKind.ATTN:
        edges = [f"{sender}->{receiver}<{k}>" for k in kinds]
    else:
        edges = [f"{sender}->{receiver}"]
    for e in edges:
        if e not in g.edge_index:
            raise AcdcError(f"no edge {e}: {sender} must write before {receiver} reads")
    stack = InterventionStack(g)
    full = evaluate_interventions(problem, stack)
    for e in edges:
        stack.push(Intervention("patch", e, source))
    path = evaluate_interventions(problem, stack) - full
    stack.clear()
    stack.push(Intervention("patch", s.name, source))
    node = evaluate_interventions(problem, stack) - full
    return PathResult(sender, receiver, edges, bootstrap(path, n_boot=n_boot),
                      bootstrap(node, n_boot=n_boot), source)
