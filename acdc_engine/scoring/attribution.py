"""Edge attribution patching: EAP and EAP-IG, every edge scored with a few passes.

The score of edge ``u->v`` estimates ``m(without u->v) - m(full)``, to first order::

    EAP(u->v)    = sum_pos (out_u(ablated) - out_u(clean)) . d m / d in_v        at the clean run
    EAP-IG(u->v) = same, with the gradient averaged over ``steps`` runs whose input embeddings
                   go from the ablated to the clean ones (alpha = 1/steps, ..., 1)

averaged over examples. The gradient for every edge at once is the gradient of the edge mask
in :func:`acdc_engine.patching.run`: one ablated forward (the corrupted run), then one
forward+backward per gradient point (EAP: 1; EAP-IG: ``steps``). The clean point's own writer
outputs supply ``clean - ablated``, so no separate clean pass is needed. EAP-IG's steps share
that delta, so their reader gradients are summed first and multiplied by it once.
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..errors import AcdcError, UnknownNameError
from ..graph import Scores
from ..patching import GradSink, PatchPlan, ReadOut, edge_grads, run, run_with_writers
from ..problem import Problem
from ..progress import progress_bar

__all__ = ["attribute", "ATTRIBUTION_METHODS", "IG_STEPS"]

ATTRIBUTION_METHODS = ("eap", "eap-ig")
"""The attribution-patching methods :func:`attribute` computes."""

IG_STEPS = 5
"""EAP-IG's default number of interpolation steps (every default ``ig_steps`` is this one)."""


def attribute(
    problem: Problem,
    method: str = "eap",
    ig_steps: int = IG_STEPS,
    progress: bool = True,
    chunk: int | None = None,
) -> Scores:
    """Per-edge scores (float32, CPU, in ``problem.graph.edges`` order).

    ``chunk``: run the gradient passes on at most ``chunk`` examples at a time (None: a whole
    batch at once). Every buffer of a pass (the writer outputs [n_writers, b, p, d], the
    autograd state, EAP-IG's reader-gradient sink [n_readers, b, p, d], and the corrupted run,
    unless the problem has it cached) then scales with ``chunk`` instead of the batch size;
    the scores are the same sums over examples, equal up to float32 rounding.
    """
    metric, model = problem.metric, problem.model
    if method not in ATTRIBUTION_METHODS:
        raise UnknownNameError("attribution method", method, list(ATTRIBUTION_METHODS))
    if not metric.differentiable:
        raise AcdcError(
            f"metric {metric.name!r} is not differentiable, so it cannot drive attribution; "
            "score with e.g. 'logit_diff' or 'kl_div' and evaluate with it instead"
        )
    if method == "eap-ig" and ig_steps < 1:
        raise AcdcError(f"ig_steps must be at least 1, got {ig_steps}")
    if chunk is not None and chunk < 1:
        raise AcdcError(f"chunk must be at least 1 example, got {chunk}")
    try:
        with model.frozen():  # gradients flow to the edge mask only, never to the weights
            return _attribute(problem, ig_steps if method == "eap-ig" else 1, method,
                              progress, chunk)
    finally:
        problem.context.resolved_workspace().release()  # the fused kernels' buffer


def _chunks(problem: Problem, i: int, batch, chunk: int | None):
    """(examples, their ablated writer outputs [W, n|1, p, d] or None) for batch ``i``, whole or
    in pieces of ``chunk`` examples; a piece's corrupted run is its own unless cached."""
    if chunk is None or chunk >= len(batch):
        yield batch, problem.ablated(i)
        return
    cached = problem._ablated.get(i)
    for lo in range(0, len(batch), chunk):
        idx = list(range(lo, min(lo + chunk, len(batch))))
        sub = batch.select(idx)
        if cached is None:
            abl = problem.ablation.activations(problem.model.adapter, sub)
        else:  # [W, b|1, p, d]: the pieces' rows (a mean broadcasts over all of them)
            abl = cached if cached.shape[1] == 1 else cached[:, idx[0] : idx[-1] + 1]
        yield sub, abl


def _attribute(problem: Problem, steps: int, desc: str, progress: bool,
               chunk: int | None = None) -> Scores:
    model, metric = problem.model, problem.metric
    adapter = model.adapter
    g = problem.graph  # position-aware when the problem has positions: masks [W, R, G]
    grad_sum = g.full_mask(0.0, device=model.device, dtype=torch.float32)
    n = 0

    def gradient(batch, sink=None, keep=False, **plan):
        """One gradient run (``plan``: ablated, or delta and embed): ``mask.grad`` (None with a
        sink) and, with ``keep``, the writer outputs."""
        mask = g.full_mask(1.0, device=model.device, dtype=model.dtype, requires_grad=True)
        how = PatchPlan(mask=mask, labels=problem.labels(batch), **plan)
        ctx = replace(problem.context, grad_sink=sink)
        if keep:
            logits, acts = run_with_writers(adapter, batch.clean, how, ReadOut.of(batch), ctx)
        else:
            logits, acts = run(adapter, batch.clean, how, ReadOut.of(batch), ctx), None
        metric.score(logits, batch).sum().backward()  # logits [b, k, vocab]
        return mask.grad, acts

    pieces = (piece for i, batch in enumerate(problem.batches)
              for piece in _chunks(problem, i, batch, chunk))
    total = sum(1 if chunk is None else -(-len(b) // chunk) for b in problem.batches)
    for batch, abl in progress_bar(pieces, desc=desc, enabled=progress, total=total):
        # abl: [W, b|1, p, d] or None
        if steps == 1:
            grad_sum += gradient(batch, ablated=abl)[0].float()
        else:
            # every step shares delta = clean - ablated, so the steps' reader gradients are
            # summed in one sink (q/k/v readers as factors) and multiplied by delta once
            sink = GradSink()
            _, delta = gradient(batch, sink=sink, keep=True, ablated=abl)  # alpha = 1: clean
            if abl is not None:
                delta.sub_(abl)  # the clean outputs, now clean - ablated, in place
            x_abl = torch.zeros_like(delta[0]) if abl is None else abl[0].expand_as(delta[0])
            for step in range(1, steps):
                embed = x_abl + (step / steps) * delta[0]  # ablated -> clean embeddings
                gradient(batch, sink=sink, delta=delta, embed=embed)
            grad_sum += edge_grads(g.base, delta, sink, problem.labels(batch), g.n_groups)
        n += len(batch)
    # a shard's sums and count are added over its ranks before the division (one process: as is)
    grad_sum = problem.ranks.sum(grad_sum)
    n = int(problem.ranks.sum_floats([n])[0])
    scores = -(grad_sum / (steps * n))  # (ablated - clean) . grad = -mask.grad
    return g.from_dense(scores).cpu()
