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

import torch

from ..errors import AcdcError, UnknownNameError
from ..graph import Scores
from ..patching import edge_grads, run
from ..problem import Problem
from ..progress import progress_bar

__all__ = ["attribute", "ATTRIBUTION_METHODS"]

ATTRIBUTION_METHODS = ("eap", "eap-ig")


def attribute(
    problem: Problem,
    method: str = "eap",
    ig_steps: int = 5,
    progress: bool = True,
) -> Scores:
    """Per-edge scores (float32, CPU, in ``problem.graph.edges`` order)."""
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
    frozen = [p for p in model.hf.parameters() if p.requires_grad]
    for p in frozen:  # gradients flow to the edge mask only, never to the weights
        p.requires_grad_(False)
    try:
        return _attribute(problem, ig_steps if method == "eap-ig" else 1, method, progress)
    finally:
        for p in frozen:
            p.requires_grad_(True)


def _attribute(problem: Problem, steps: int, desc: str, progress: bool) -> Scores:
    model, metric = problem.model, problem.metric
    adapter, g = model.adapter, model.graph
    grad_sum = torch.zeros(g.n_writers, g.n_readers, device=model.device, dtype=torch.float32)
    n = 0

    def gradient(batch, sink=None, **kw):
        mask = torch.ones(g.n_writers, g.n_readers, device=model.device, dtype=model.dtype,
                          requires_grad=True)
        out = run(adapter, batch.clean, mask=mask, last_only=True, grad_sink=sink, **kw)
        logits, acts = out if kw.get("collect") else (out, None)
        metric(logits[:, -1], batch).sum().backward()
        return mask.grad, acts

    for i, batch in enumerate(progress_bar(problem.batches, desc=desc, enabled=progress)):
        abl = problem.ablated(i)  # [W, b|1, p, d] or None
        if steps == 1:
            grad_sum += gradient(batch, ablated=abl)[0].float()
        else:
            # every step shares delta = clean - ablated, so the steps' reader gradients are
            # summed in one sink and multiplied by delta once, not once per step
            b, p = batch.clean.shape
            sink = torch.zeros(g.n_readers, b, p, adapter.d_model, device=model.device,
                               dtype=model.dtype)
            _, delta = gradient(batch, sink=sink, ablated=abl, collect=True)  # alpha = 1: clean
            if abl is not None:
                delta.sub_(abl)  # the clean outputs, now clean - ablated, in place
            x_abl = torch.zeros_like(delta[0]) if abl is None else abl[0].expand_as(delta[0])
            for step in range(1, steps):
                embed = x_abl + (step / steps) * delta[0]  # ablated -> clean embeddings
                gradient(batch, sink=sink, delta=delta, embed=embed)
            grad_sum += edge_grads(g, delta, sink)
        n += len(batch)
    scores = -(grad_sum / (steps * n))  # (ablated - clean) . grad = -mask.grad
    return g.from_dense(scores).cpu()
