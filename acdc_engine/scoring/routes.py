"""Information flow routes (Ferrando and Voita 2024), as MIB scores edges with them.

No counterfactual: from the clean run alone, each reader's input ``x_v`` (the sum of the
writers upstream of it, plus the attention biases added to the residual stream before it) is
split into its writers' contributions by proximity in L1 distance::

    proximity(u, v) = max(0, |x_v|_1 - |x_v - out_u|_1)          per example and position
    importance(u, v) = proximity(u, v) / sum_u' proximity(u', v)

and an edge's score is its importance averaged over positions and examples (MIB's
``get_scores_information_flow_routes``, hannamw/EAP-IG ``src/eap/attribute.py``: the writer's
whole output at a position, not split by source token as Ferrando and Voita do for attention).
``threshold`` (their tau) counts an importance below it as 0 before averaging (0: MIB's).
Scores are in [0, 1] and every reader's column sums to 1 at each position (before the
threshold). Readers of one group (a layer's q/k/v inputs) share an input, so they share scores.
"""

from __future__ import annotations

import torch

from ..errors import AcdcError
from ..graph import Scores
from ..patching import writer_outputs
from ..problem import Problem
from ..progress import progress_bar

__all__ = ["information_flow_routes", "reader_groups", "reader_inputs"]

_BLOCK = 64  # writers per L1-distance block: bounds the [block, b, p, d] difference tensor


def reader_groups(g) -> list[tuple[int, slice, int]]:
    """``(writers upstream, reader columns, layers whose attention bias is in the input)`` for
    every reader group, in forward order."""
    out = []
    for layer in range(g.n_layers):
        out.append((g.attn_upstream(layer), g.attn_slots(layer), layer))
        if not g.attn_only:
            slot = g.mlp_slot(layer)
            out.append((g.mlp_upstream(layer), slice(slot, slot + 1),
                        layer if g.parallel else layer + 1))
    out.append((g.n_writers, slice(g.logits_slot, g.logits_slot + 1), g.n_layers))
    return out


def information_flow_routes(problem: Problem, threshold: float = 0.0,
                            progress: bool = True) -> Scores:
    """Per-edge importance from the clean prompts alone (module docstring); ignores the
    task's corrupted prompts, answers and metric."""
    if problem.positions is not None:
        raise AcdcError("info-flow-routes does not split edges by position yet; run it without "
                        "--positions")
    if not 0.0 <= threshold <= 1.0:
        raise AcdcError(f"threshold must be in [0, 1] (an importance), got {threshold}")
    g, adapter = problem.graph, problem.model.adapter
    dense = torch.zeros(g.n_writers, g.n_readers, dtype=torch.float32)
    biases = [adapter.attn_bias(layer) for layer in range(g.n_layers)]
    with torch.no_grad():
        for batch in progress_bar(problem.batches, desc="info-flow-routes", enabled=progress):
            outs = writer_outputs(adapter, batch.clean, context=problem.context)  # [W, b, p, d]
            for n_up, cols, in_ in reader_inputs(outs, biases, g):
                imp = _importance(outs[:n_up], in_, threshold)  # [n_up, b, p]
                dense[:n_up, cols] += imp.mean(2).sum(1).cpu()[:, None]
    return g.from_dense(dense / problem.n_examples)


def reader_inputs(outs: torch.Tensor, biases: list, g):
    """Each reader group's ``(writers upstream, columns, its input [b, p, d])``,
    the input accumulated writer by writer as the forward does."""
    x = torch.zeros_like(outs[0])
    done, bias_done = 0, 0
    for n_up, cols, n_bias in reader_groups(g):
        if n_up > done:
            x = x + outs[done:n_up].sum(0)
            done = n_up
        while bias_done < n_bias:
            if biases[bias_done] is not None:
                x = x + biases[bias_done].to(x.dtype)
            bias_done += 1
        yield n_up, cols, x


def _importance(outs: torch.Tensor, x: torch.Tensor, threshold: float) -> torch.Tensor:
    """[n, b, p] each writer's share of ``x`` by L1 proximity (zero where no writer is near)."""
    norm = x.abs().sum(-1, dtype=torch.float32)  # [b, p]
    prox = torch.cat([
        (norm - (outs[i:i + _BLOCK] - x).abs().sum(-1, dtype=torch.float32)).clamp_min_(0)
        for i in range(0, len(outs), _BLOCK)])  # [n, b, p]
    total = prox.sum(0, keepdim=True)
    imp = torch.where(total > 0, prox / total.clamp_min(torch.finfo(prox.dtype).tiny), 0.0)
    if threshold > 0:
        imp = imp.masked_fill(imp < threshold, 0.0)
    return imp
