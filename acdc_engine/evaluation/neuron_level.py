"""Circuits of attention heads and MLP neurons: the neuron level.

At the neuron level the units are the attention heads (whole, as at the node level) and the
hidden units of every MLP (the input of the family's output projection,
:meth:`~acdc_engine.models.ModelAdapter.mlp_out_proj`: after the nonlinearity and any gating).
A removed head's output is ablated for every reader (its mask row, :mod:`.levels`); a removed
neuron's hidden activation is replaced by the problem's ablation source in the patched forward
(:class:`~acdc_engine.patching.NeuronPatch`): the corrupted run's hidden activation (same
example), its mean over the corrupted prompts (per position and prompt length), or zero. The
input, the logits and the MLP nodes themselves stay; an MLP with every neuron removed computes
``f(source)``, which for corrupted and mean ablation is exactly its ablated output.

Scores (:func:`neuron_attribution`) are attribution patching at the clean run, in one
backward pass per batch: a head's score is the sum of its outgoing edges' EAP scores, a
neuron's is ``(source_i - h_i) . dm/dh_i`` summed over positions (the metric's first-order
change when the neuron is replaced), averaged over examples. For an MLP whose output is an
affine map of its hidden units (GPT-2, and the gated families' down projection) the neurons'
scores of a layer add up to that MLP node's EAP score with corrupted ablation (tested).

The curve (:func:`unit_curve`) is MIB's, over unit budgets: the top ``n`` units by ``|score|``
at each budget (percent of all heads and neurons), normalized faithfulness against the fraction
of units kept; the empty circuit removes every head and neuron.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import AcdcError
from ..graph import NodeKind
from ..patching import NeuronPatch, PatchPlan, ReadOut, run, writer_outputs
from ..problem import Problem
from ..progress import progress_bar
from .curves import BUDGETS, Curve
from .levels import node_keep

__all__ = ["NeuronScores", "hidden_sources", "neuron_attribution", "unit_circuit",
           "unit_curve", "check_neuron_level"]


def check_neuron_level(problem: Problem) -> dict[int, int]:
    """Layer -> its MLP's number of neurons, for ``problem``'s model, or a one-line
    :class:`AcdcError` (an attention-only model, position-aware edges, a family without the
    ``mlp_out_proj`` hook point)."""
    g = problem.graph
    if g.attn_only:
        raise AcdcError("the model is attention-only: it has no MLP neurons for --level neuron")
    if g.positions:
        raise AcdcError("--level neuron does not take position-aware edges; run it without "
                        "--positions")
    adapter = problem.model.adapter
    for layer in range(g.n_layers):
        adapter.mlp_out_proj(layer)  # UnsupportedModelError (one line) for such a family
    with torch.no_grad():
        hidden = _read_hidden(adapter, problem.batches[0].clean[:1], list(range(g.n_layers)))
    return {layer: h.shape[-1] for layer, h in hidden.items()}


def _read_hidden(adapter, ids: torch.Tensor, layers: list[int]) -> dict[int, torch.Tensor]:
    """Every layer's MLP hidden activation [b, p, d_mlp] in a plain run of ``ids``."""
    seen: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
    handles = [adapter.mlp_out_proj(layer).register_forward_pre_hook(
        lambda module, args, layer=layer: seen[layer].append(args[0].detach()))
        for layer in layers]
    try:
        writer_outputs(adapter, ids)
    finally:
        for h in handles:
            h.remove()
    if any(len(v) != 1 for v in seen.values()):
        raise AcdcError("an MLP output projection ran other than once in one forward pass: the "
                        "family's mlp_out_proj is wrong")
    return {layer: v[0] for layer, v in seen.items()}


@torch.no_grad()
def hidden_sources(problem: Problem, layers: list[int]) -> list[dict[int, torch.Tensor | None]]:
    """Per batch, per layer: what replaces a removed neuron, [b or 1, p, d_mlp] (None: zero),
    from the problem's ablation (corrupted: each example's corrupted run; mean: the mean over
    the corrupted prompts of the same length, per position)."""
    kind = problem.ablation.kind
    if kind == "zero":
        return [dict.fromkeys(layers) for _ in problem.batches]
    adapter = problem.model.adapter
    hs = [_read_hidden(adapter, b.corrupted, layers) for b in problem.batches]
    if kind == "corrupted":
        return hs
    out = []
    for layer_hs in hs:
        means = {}
        for layer, h in layer_hs.items():
            same = [x[layer] for x in hs if x[layer].shape[1] == h.shape[1]]
            means[layer] = torch.cat(same).mean(0, keepdim=True)
        out.append(means)
    return out


@dataclass
class NeuronScores:
    """Unit scores of the neuron level: ``heads`` [n_writers] (the heads' entries; the input's
    and the MLPs' are unused) and ``neurons`` (layer -> [d_mlp]); ``sources`` the per-batch
    values that replaced the neurons when they were scored (:func:`hidden_sources`), kept so
    the curve does not run the corrupted prompts again."""

    heads: torch.Tensor
    neurons: dict[int, torch.Tensor]
    sources: list | None = field(default=None, repr=False)

    def units(self, graph) -> list[tuple[str, int, int, float]]:
        """``(kind, writer or layer, neuron or -1, score)`` for every head and neuron."""
        out = [("head", w, -1, float(self.heads[w])) for w, node in enumerate(graph.writers)
               if node.kind is NodeKind.ATTN]
        for layer, s in self.neurons.items():
            out += [("neuron", layer, i, v) for i, v in enumerate(s.tolist())]
        return out


def neuron_attribution(problem: Problem, progress: bool = False) -> NeuronScores:
    """Attribution patching of every head and MLP neuron (see the module docstring)."""
    sizes = check_neuron_level(problem)
    layers = list(sizes)
    g, model = problem.graph, problem.model
    sources = hidden_sources(problem, layers)
    w, _ = g.coords
    heads = torch.zeros(g.n_writers, dtype=torch.float64)
    neurons: dict[int, torch.Tensor] = {}
    with model.frozen():
        for i, batch in enumerate(progress_bar(problem.batches, desc="neuron attribution",
                                               enabled=progress)):
            mask = g.full_mask(1.0, device=model.device, dtype=model.dtype, requires_grad=True)
            keeps = {layer: torch.ones(d_mlp, device=model.device, dtype=model.dtype,
                                       requires_grad=True) for layer, d_mlp in sizes.items()}
            plan = PatchPlan(mask=mask, ablated=problem.ablated(i), neurons={
                layer: NeuronPatch(keeps[layer], sources[i][layer]) for layer in layers})
            logits = run(model.adapter, batch.clean, plan, ReadOut.of(batch), problem.context)
            problem.metric.score(logits, batch).sum().backward()
            heads.index_add_(0, w.to(mask.device), -g.from_dense(mask.grad).double().cpu())
            for layer, k in keeps.items():
                part = -k.grad.double().cpu()
                neurons[layer] = part if layer not in neurons else neurons[layer] + part
    n = problem.n_examples
    return NeuronScores(heads / n, {layer: s / n for layer, s in neurons.items()}, sources)


def unit_circuit(graph, scores: NeuronScores, n_units: int) -> tuple[torch.Tensor, dict]:
    """The top ``n_units`` heads and neurons by ``|score|``: (kept writers [n_writers] bool:
    the input, the MLPs and the kept heads; layer -> neuron keep [d_mlp] float)."""
    units = scores.units(graph)
    if not 0 <= n_units <= len(units):
        raise AcdcError(f"n_units must be between 0 and {len(units)}, got {n_units}")
    order = sorted(range(len(units)), key=lambda j: -abs(units[j][3]))[:n_units]
    kept = torch.tensor([node.kind is not NodeKind.ATTN for node in graph.writers])
    keeps = {layer: torch.zeros(len(s)) for layer, s in scores.neurons.items()}
    for j in order:
        kind, a, b, _ = units[j]
        if kind == "head":
            kept[a] = True
        else:
            keeps[a][b] = 1.0
    return kept, keeps


@torch.no_grad()
def _evaluate(problem: Problem, circuits: list[tuple[torch.Tensor, dict] | None],
              sources, progress: bool) -> list[float]:
    """Mean metric of each ``(kept writers, neuron keeps)`` circuit (None: the full model)."""
    g, model = problem.graph, problem.model
    totals = [0.0] * len(circuits)
    masks = [None if c is None else g.mask_from_edges(node_keep(g, c[0])).to(
        model.device, model.dtype) for c in circuits]
    for i, batch in enumerate(progress_bar(problem.batches, desc="neuron-level curve",
                                           enabled=progress)):
        abl = problem.ablated(i)
        for j, c in enumerate(circuits):
            plan = PatchPlan() if c is None else PatchPlan(mask=masks[j], ablated=abl, neurons={
                layer: NeuronPatch(k.to(model.device), sources[i][layer])
                for layer, k in c[1].items()})
            logits = run(model.adapter, batch.clean, plan, ReadOut.of(batch), problem.context)
            totals[j] += float(problem.metric.score(logits, batch).sum())
    return [t / problem.n_examples for t in totals]


def unit_curve(problem: Problem, scores: NeuronScores, budgets=BUDGETS, *,
               extra: list[int] | None = None, progress: bool = False):
    """The neuron-level curve: ``(Curve (unit 'units'), circuits per budget, values of the
    circuits of ``extra`` unit counts)``, evaluated in one pass over the batches."""
    g = problem.graph
    total = len(scores.units(g))
    counts = [max(1, round(total * pct / 100)) for pct in budgets] + list(extra or [])
    circuits = [unit_circuit(g, scores, n) for n in counts]
    sources = scores.sources if scores.sources is not None else \
        hidden_sources(problem, list(scores.neurons))
    empty = unit_circuit(g, scores, 0)
    values = _evaluate(problem, circuits + [None, empty], sources, progress)
    n_b = len(budgets)
    curve = Curve(tuple(float(b) for b in budgets), tuple(counts[:n_b]), total,
                  tuple(values[:n_b]), values[-2], values[-1], unit="units")
    return curve, circuits[:n_b], values[n_b:-2]
