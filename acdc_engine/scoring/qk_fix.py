"""AtP*'s QK fix (Kramar et al. 2024) for edges into a head's queries and keys.

AtP linearizes the attention softmax, which misses the effect of a query or key patch that
moves a saturated attention pattern. AtP* recomputes the pattern exactly and linearizes only
what follows: ``(A' - A) . dm/dA``. A head's output is linear in its pattern for fixed values
(``out_h = sum_s A[t, s] V_s W_O``), so that product is exactly

    (out_h(q', k, v) - out_h(q, k, v)) . dm/d out_h

with ``q'`` the head's query input with the edge removed, ``in_q - delta_u`` (``delta = clean
- ablated``); the same for keys. Every head of a layer reads one residual stream, so one call
of the adapter's ``attn_heads`` with the patched stream gives the edge ``u -> h.q`` for all
heads ``h`` of the layer: one attention call per (layer, upstream writer, q or k), no
gradient. ``dm/d out_h`` comes from one backward of the clean run. Every other edge (values,
MLPs, logits) keeps EAP's score, so :func:`atp_qk` is EAP with the QK fix on query and key
edges, in EAP's sign and average over examples.
"""

from __future__ import annotations

import torch

from ..errors import AcdcError
from ..graph import Scores
from ..patching import PatchPlan, ReadOut, run, writer_outputs
from ..problem import Problem
from ..progress import progress_bar
from .attribution import attribute
from .routes import reader_inputs
from .variants import _check, _Frozen, _scored

__all__ = ["atp_qk", "qk_effects"]


def atp_qk(problem: Problem, progress: bool = True) -> Scores:
    """EAP's scores with the edges into queries and keys replaced by AtP*'s QK-fixed
    estimates (module docstring)."""
    _check(problem, "atp-qk")
    if problem.graph.positions:
        raise AcdcError("atp-qk does not split edges by position yet; run it without "
                        "--positions")
    eap = problem.graph.to_dense(attribute(problem, "eap", progress=False))
    qk = _scored(problem, _qk, progress)
    g = problem.graph
    for layer in range(g.n_layers):
        cols = g.attn_slots(layer)
        qk_cols = slice(cols.start, cols.start + 2 * g.n_heads)  # q of each head, then k
        n_up = g.attn_upstream(layer)
        eap[:n_up, qk_cols] = qk[:n_up, qk_cols]
    return g.from_dense(eap)


def _qk(problem: Problem, progress: bool) -> torch.Tensor:
    g = problem.graph
    dense = torch.zeros(g.n_writers, g.n_readers, dtype=torch.float64)
    for i, batch in enumerate(progress_bar(problem.batches, desc="atp-qk", enabled=progress)):
        dense += qk_effects(problem, batch, problem.ablated(i)).double().cpu()
    return (dense / problem.n_examples).float()


@torch.no_grad()
def _heads(adapter, layer: int, q, k, v) -> torch.Tensor:
    return adapter.attn_heads(layer, q, k, v)


def qk_effects(problem: Problem, batch, abl: torch.Tensor | None) -> torch.Tensor:
    """[W, R] the QK-fixed effects of removing each edge into a query or a key, summed over
    ``batch``'s examples (zero elsewhere): ``(out_h(patched) - out_h) . dm/d out_h``."""
    g, adapter = problem.graph, problem.model.adapter
    with torch.no_grad():
        outs = writer_outputs(adapter, batch.clean, context=problem.context)  # [W, b, p, d]
    delta = outs if abl is None else outs - abl
    grads: dict = {}
    with problem.model.frozen():
        logits = run(_Frozen(adapter, grads=grads), batch.clean, PatchPlan(),
                     ReadOut.of(batch), problem.context)
        problem.metric.score(logits, batch).sum().backward()
    _Frozen(adapter).prepare(batch.clean)  # per-length state (rotary tables) for the calls
    biases = [adapter.attn_bias(layer) for layer in range(g.n_layers)]
    out = torch.zeros(g.n_writers, g.n_readers, dtype=torch.float32, device=outs.device)
    H = g.n_heads
    streams = {cols.start: x for _, cols, x in reader_inputs(outs, biases, g)}
    for layer in range(g.n_layers):
        a0, cols = g.attn_upstream(layer), g.attn_slots(layer)
        grad = grads.get(a0)  # [H, b, p, d]: dm/d out_h (None: no gradient reached them)
        if grad is None:
            continue
        x = streams[cols.start]  # the heads' clean input [b, p, d]
        clean = _heads(adapter, layer, x, x, x)  # as the patched calls compute it
        for u in range(a0):
            xu = x - delta[u]
            for part, (q, k) in enumerate(((xu, x), (x, xu))):  # the query, then the key
                diff = _heads(adapter, layer, q, k, x) - clean  # [H, b, p, d]
                eff = (diff * grad).sum((1, 2, 3), dtype=torch.float32)  # [H]
                out[u, cols.start + part * H:cols.start + (part + 1) * H] = eff
    return out
