"""EAP-GP: edge attribution patching along GradPath (Zhang et al. 2025, arXiv 2502.06852).

EAP-IG averages the metric's gradient over points on the straight line from the ablated to
the clean input embeddings. EAP-GP keeps EAP-IG's score and changes the points: GradPath
starts at the clean input embeddings ``x`` and takes ``steps`` normalised gradient-descent
steps on the distance between the model's output there and its ablated output::

    gamma_0     = x                                            (the clean embeddings)
    g_j         = d || G(gamma_j) - G(x') ||^2 / d gamma_j     (per example)
    gamma_{j+1} = gamma_j - step * g_j / ||g_j||               (||.||: one example's [pos, d])

    EAP-GP(u->v) = sum_pos (out_u(ablated) - out_u(clean)) . (1/steps) sum_{j=1..steps}
                   d m / d in_v (at the run whose input embeddings are gamma_j)

averaged over examples. ``G`` is the logits the metric reads (its read positions);
``G(x')`` is the fully ablated run's (every edge removed: the corrupted run's own logits
with corrupted ablation). ``step`` is 1 in the paper (unit steps). So the path follows the
model's own gradient towards the ablated output instead of a straight line through
saturated regions. ``delta = clean - ablated`` writer outputs is fixed, as in EAP-IG, and
the points' reader gradients are summed in one :class:`GradSink` and multiplied by it once.

Cost per batch: ``steps`` gradient passes to build the path (the gradient of the distance
w.r.t. the embeddings), ``steps`` gradient passes to score (the edge mask's gradient), and
two plain forwards (the clean writer outputs, the ablated logits).
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from ..errors import AcdcError
from ..graph import Scores
from ..patching import GradSink, PatchPlan, ReadOut, edge_grads, run, writer_outputs
from ..problem import Problem
from ..progress import progress_bar

__all__ = ["eap_gp", "grad_path", "GP_STEPS", "GP_STEP"]

GP_STEPS = 5
"""EAP-GP's default number of GradPath steps (the paper's k)."""

GP_STEP = 1.0
"""EAP-GP's default step length in embedding space, per example (the paper's unit step)."""


def _refuse(problem: Problem, steps: int, step: float) -> None:
    if not problem.metric.differentiable:
        raise AcdcError(f"metric {problem.metric.name!r} is not differentiable, so it cannot "
                        "drive eap-gp; score with e.g. 'logit_diff' or 'kl_div'")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise AcdcError(f"eap-gp steps must be an integer of at least 1, got {steps!r}")
    if not (isinstance(step, (int, float)) and math.isfinite(step) and step > 0):
        raise AcdcError(f"eap-gp step must be a finite length above 0, got {step!r}")


def grad_path(problem: Problem, i: int, steps: int = GP_STEPS,
              step: float = GP_STEP) -> list[torch.Tensor]:
    """GradPath of batch ``i``: the points ``gamma_1 .. gamma_steps`` [b, p, d] (detached),
    each ``step`` (per example) from the one before along the negative gradient of
    ``||G(gamma) - G(ablated)||^2``, from the clean embeddings (module docstring).
    ``steps`` gradient passes and one ablated forward and one embedding lookup."""
    _refuse(problem, steps, step)
    with problem.model.frozen():
        return _path(problem, i, steps, float(step))


def _path(problem: Problem, i: int, steps: int, step: float) -> list[torch.Tensor]:
    adapter, batch = problem.model.adapter, problem.batches[i]
    readout, labels = ReadOut.of(batch), problem.labels(batch)
    ctx = replace(problem.context, grad_sink=None)
    with torch.no_grad():
        zero = problem.graph.full_mask(0.0, device=problem.model.device,
                                       dtype=problem.model.dtype)
        target = run(adapter, batch.clean, PatchPlan(mask=zero, ablated=problem.ablated(i),
                                                     labels=labels), readout, ctx)
        gamma = adapter.embed(batch.clean).detach()
    points = []
    for _ in range(steps):
        with torch.enable_grad():
            x = gamma.clone().requires_grad_(True)
            logits = run(adapter, batch.clean, PatchPlan(embed=x), readout, ctx)
            (grad,) = torch.autograd.grad((logits - target).pow(2).sum(), x)
        norm = grad.flatten(1).norm(dim=1).clamp_min(torch.finfo(grad.dtype).tiny)
        gamma = (gamma - step * grad / norm.view(-1, 1, 1)).detach()
        points.append(gamma)
    return points


def eap_gp(problem: Problem, steps: int = GP_STEPS, step: float = GP_STEP,
           progress: bool = True) -> Scores:
    """EAP-GP edge scores (float32, CPU, in ``problem.graph.edges`` order): ``(ablated -
    clean)_u . mean over GradPath's points of d m / d in_v``, averaged over examples (module
    docstring). Refuses a non-differentiable metric, ``steps < 1`` and a ``step`` that is not
    a positive finite length, each in one line."""
    _refuse(problem, steps, step)
    try:
        with problem.model.frozen():
            return _eap_gp(problem, steps, float(step), progress)
    finally:
        problem.context.resolved_workspace().release()


def _eap_gp(problem: Problem, steps: int, step: float, progress: bool) -> Scores:
    g, model = problem.graph, problem.model
    adapter = model.adapter
    total, n = None, 0
    for i, batch in enumerate(progress_bar(problem.batches, desc="eap-gp", enabled=progress)):
        abl, labels = problem.ablated(i), problem.labels(batch)
        points = _path(problem, i, steps, step)
        with torch.no_grad():
            delta = writer_outputs(adapter, batch.clean, context=problem.context)
        if abl is not None:
            delta.sub_(abl)  # clean - ablated
        sink = GradSink()
        ctx = replace(problem.context, grad_sink=sink)
        for gamma in points:
            mask = g.full_mask(1.0, device=model.device, dtype=model.dtype, requires_grad=True)
            plan = PatchPlan(mask=mask, delta=delta, embed=gamma, labels=labels)
            logits = run(adapter, batch.clean, plan, ReadOut.of(batch), ctx)
            problem.metric.score(logits, batch).sum().backward()
        got = edge_grads(g.base, delta, sink, labels, g.n_groups)
        total = got if total is None else total.add_(got)
        n += len(batch)
    return g.from_dense(-(total / (steps * n))).cpu()
