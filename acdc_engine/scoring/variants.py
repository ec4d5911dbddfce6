"""Attribution variants beside EAP/EAP-IG, every gradient from the one patched forward.

Scores follow :mod:`acdc_engine.scoring.attribution`'s sign: ``(ablated - clean) . gradient``,
averaged over examples, ``delta = clean - ablated`` fixed (the clean run's writer outputs
minus the ablation's), in ``problem.graph.edges`` order.

    eap_ig_activations  EAP-IG over activations: ``steps`` points where writer outputs are
                        interpolated between ablated and clean (alpha = 1/steps ... 1),
                        one layer's writers at a time (``per="layer"``: MIB's
                        ``get_scores_ig_activations``, hannamw/EAP-IG ``src/eap/attribute.py``)
                        or all writers together (``per="all"``: that repository's
                        ``get_scores_ig_partial_activations``)
    clean_corrupted     the gradient averaged over the clean and the ablated point (MIB's
                        ``get_scores_clean_corrupted``)
    atp_graddrop        AtP* GradDrop node scores (Kramar et al. 2024, eq. 11), one backward
                        per dropped layer; an edge scores as the less important of its nodes

How a run holds a layer's output fixed (MIB's ``+ activations * 0``; GradDrop's dropped layer):
the patched forward's backward always treats ``delta`` as a constant, so a mask cannot stop a
gradient; :class:`_Frozen` wraps the adapter and detaches the layer's written output (its
value unchanged), so no gradient reaches that layer's readers through it. Such runs hand the
reader gradients to a :class:`GradSink` without q/k/v factors (a frozen layer's readers are
never reached, and a reader group whose backward never runs must not hold edge products).
"""

from __future__ import annotations

import inspect
from dataclasses import replace

import torch

from ..errors import AcdcError
from ..graph import NodeKind, Scores
from ..patching import GradSink, PatchPlan, ReadOut, edge_grads, run, run_with_writers, \
    writer_outputs
from ..problem import Problem
from ..progress import progress_bar
from .attribution import IG_STEPS

__all__ = ["eap_ig_activations", "clean_corrupted", "atp_graddrop", "IG_ACT_PER",
           "layer_nodes", "node_scores_on_edges"]

IG_ACT_PER = ("layer", "all")
"""How EAP-IG over activations interpolates: one layer-node at a time (MIB) or every writer."""


class _Frozen:
    """``adapter`` whose attention outputs of layers ``attn`` and MLP outputs of layers ``mlp``
    are detached (same values, no gradient through them); with ``grads`` (a dict), each
    writer's output gradient is stored there by writer row (``0``: the embeddings, a layer's
    heads under their first row as [H, b, p, d]). Everything else is the adapter's own."""

    def __init__(self, adapter, attn=(), mlp=(), grads: dict | None = None):
        object.__setattr__(self, "_a", adapter)
        object.__setattr__(self, "_attn", set(attn))
        object.__setattr__(self, "_mlp", set(mlp))
        object.__setattr__(self, "_grads", grads)

    def __getattr__(self, name):
        return getattr(self._a, name)

    def __setattr__(self, name, value):  # the forward sets adapter.workspace
        setattr(self._a, name, value)

    def prepare(self, input_ids, workspace=None):
        """The adapter's per-run state and workspace (a family whose ``prepare`` takes the ids
        alone gets the workspace as an attribute, as the forward does)."""
        a = self._a
        params = inspect.signature(type(a).prepare).parameters.values()
        if len(params) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params):
            a.prepare(input_ids, workspace)
        else:
            a.prepare(input_ids)
            a.workspace = workspace

    def _out(self, out, frozen: bool, row: int):
        if self._grads is not None and out.requires_grad:
            out.register_hook(lambda gr: self._grads.__setitem__(row, gr))
        return out.detach() if frozen else out

    def embed(self, input_ids):
        x = self._a.embed(input_ids)
        if self._grads is None:
            return x
        return self._out(x.detach().requires_grad_(True), False, 0)

    def attn_heads(self, layer, q, k, v):
        g = self._a.graph
        return self._out(self._a.attn_heads(layer, q, k, v), layer in self._attn,
                         g.attn_upstream(layer))

    def attn_out(self, layer, q, k, v):
        out = self._a.attn_out(layer, q, k, v)
        return out.detach() if layer in self._attn else out

    def attn_write(self, layer, q, k, v, out):
        written = self._a.attn_write(layer, q, k, v, out)
        return written.detach() if layer in self._attn else written

    def mlp(self, layer, x):
        g = self._a.graph
        return self._out(self._a.mlp(layer, x), layer in self._mlp,
                         g.attn_upstream(layer) + g.n_heads)


def layer_nodes(g) -> list[tuple[slice, tuple, tuple]]:
    """MIB's node list for EAP-IG over activations: the embeddings, then each layer's
    attention (all its heads together) and MLP: ``(writer rows, frozen attn layers, frozen
    MLP layers)`` per node."""
    out = [(slice(0, 1), (), ())]
    for layer in range(g.n_layers):
        a0 = g.attn_upstream(layer)
        out.append((slice(a0, a0 + g.n_heads), (layer,), ()))
        if not g.attn_only:
            out.append((slice(a0 + g.n_heads, a0 + g.n_heads + 1), (), (layer,)))
    return out


def _backward(problem: Problem, batch, plan: PatchPlan, sink=None, adapter=None,
              ids=None, keep: bool = False):
    """One gradient run of ``batch`` under ``plan`` (its mask requires grad): ``(mask.grad or
    None with a sink, the writer outputs when ``keep``)``."""
    adapter = problem.model.adapter if adapter is None else adapter
    ids = batch.clean if ids is None else ids
    ctx = replace(problem.context, grad_sink=sink)
    if keep:
        logits, acts = run_with_writers(adapter, ids, plan, ReadOut.of(batch), ctx)
    else:
        logits, acts = run(adapter, ids, plan, ReadOut.of(batch), ctx), None
    problem.metric.score(logits, batch).sum().backward()
    return plan.mask.grad, acts


def _check(problem: Problem, what: str, steps: int = 1) -> None:
    if not problem.metric.differentiable:
        raise AcdcError(f"metric {problem.metric.name!r} is not differentiable, so it cannot "
                        f"drive {what}; score with e.g. 'logit_diff' or 'kl_div'")
    if steps < 1:
        raise AcdcError(f"ig_steps must be at least 1, got {steps}")


def _scored(problem: Problem, fn, *args) -> Scores:
    """``fn(problem, *args)`` with the weights frozen and the fused kernels' buffer released."""
    try:
        with problem.model.frozen():
            return fn(problem, *args)
    finally:
        problem.context.resolved_workspace().release()


def _mask(problem: Problem, fill: float = 1.0) -> torch.Tensor:
    model = problem.model
    return problem.graph.full_mask(fill, device=model.device, dtype=model.dtype)


def _clean_delta(problem: Problem, batch, abl, sink) -> torch.Tensor:
    """The clean point's gradient run (into ``sink``): its writer outputs minus ``abl``."""
    plan = PatchPlan(mask=_mask(problem).requires_grad_(True), ablated=abl,
                     labels=problem.labels(batch))
    _, delta = _backward(problem, batch, plan, sink=sink, keep=True)
    return delta if abl is None else delta.sub_(abl)  # [W, b, p, d]


def _ablated_input(delta: torch.Tensor, abl) -> torch.Tensor:
    """The ablated embeddings [b, p, d] (zero for zero ablation)."""
    return torch.zeros_like(delta[0]) if abl is None else abl[0].expand_as(delta[0])


# ----- EAP-IG over activations --------------------------------------------------------------


def eap_ig_activations(problem: Problem, steps: int = IG_STEPS, per: str = "layer",
                       progress: bool = True) -> Scores:
    """EAP-IG over activations: per edge ``(ablated - clean)_u . mean over points of d m /
    d in_v``, the points being runs where writer outputs read downstream are ``alpha * clean +
    (1 - alpha) * ablated``, alpha = k/steps for k = 1..steps.

    ``per="layer"`` (MIB): one point set per node of :func:`layer_nodes` (the embeddings, a
    layer's attention, an MLP), that node alone interpolated and its output held fixed (no
    gradient through it, MIB's ``+ activations * 0``), every edge's gradient summed over all
    ``len(layer_nodes) * steps`` runs and divided by their number, as MIB does.
    ``per="all"``: every writer's output shifted by ``-(1 - alpha) delta`` at once (a mask of
    alpha everywhere with ``delta`` fixed), gradients flowing through them: ``steps`` runs.
    With ``steps=1``, ``"all"`` is EAP (its one point is the clean run); ``"layer"``'s points
    are the clean run too, but with one node's output held fixed each, so an edge into the
    logits scores as in EAP and an edge into the last node's readers (N-1)/N of EAP."""
    if per not in IG_ACT_PER:
        raise AcdcError(f"per must be one of {', '.join(IG_ACT_PER)}, got {per!r}")
    _check(problem, "eap-ig-act", steps)
    return _scored(problem, _ig_activations, steps, per, progress)


def _ig_activations(problem: Problem, steps: int, per: str, progress: bool) -> Scores:
    g = problem.graph
    total, n, runs = None, 0, 0
    for i, batch in enumerate(progress_bar(problem.batches, desc="eap-ig-act",
                                           enabled=progress)):
        abl, labels = problem.ablated(i), problem.labels(batch)
        if per == "all":
            sink = GradSink()
            delta = _clean_delta(problem, batch, abl, sink)  # the alpha = 1 point
            for k in range(1, steps):
                mask = _mask(problem, k / steps).requires_grad_(True)
                _backward(problem, batch, PatchPlan(mask=mask, delta=delta, labels=labels),
                          sink=sink)
            runs = steps
        else:
            with torch.no_grad():
                delta = writer_outputs(problem.model.adapter, batch.clean,
                                       context=problem.context)
            if abl is not None:
                delta.sub_(abl)
            sink = GradSink()
            sink.factors_ok = False  # a frozen layer's readers are never reached
            nodes = layer_nodes(problem.model.graph)
            for rows, attn, mlp in nodes:
                frozen = _Frozen(problem.model.adapter, attn, mlp)
                for k in range(1, steps + 1):
                    mask = _mask(problem)
                    mask[rows] = k / steps
                    plan = PatchPlan(mask=mask.requires_grad_(True), delta=delta, labels=labels)
                    _backward(problem, batch, plan, sink=sink, adapter=frozen)
            runs = len(nodes) * steps
        got = edge_grads(g.base, delta, sink, labels, g.n_groups)
        total = got if total is None else total.add_(got)
        n += len(batch)
    return g.from_dense(-(total / (runs * n))).cpu()


# ----- clean-corrupted ----------------------------------------------------------------------


def clean_corrupted(problem: Problem, progress: bool = True) -> Scores:
    """The gradient averaged over two points, times ``(ablated - clean)``: the clean run (EAP's
    point) and the ablated one. With corrupted ablation the ablated point is the model's own
    run on the corrupted prompts (MIB's ``get_scores_clean_corrupted``); with mean or zero
    ablation it is the run whose input embeddings are the ablated ones (EAP-IG's alpha = 0
    point), every edge kept. ``delta`` is the clean minus ablated writer outputs at both."""
    _check(problem, "eap-clean-corrupted")
    return _scored(problem, _clean_corrupted, progress)


def _clean_corrupted(problem: Problem, progress: bool) -> Scores:
    g = problem.graph
    corrupted = problem.ablation.kind == "corrupted"
    total, n = None, 0
    for i, batch in enumerate(progress_bar(problem.batches, desc="eap-clean-corrupted",
                                           enabled=progress)):
        abl, labels = problem.ablated(i), problem.labels(batch)
        sink = GradSink()
        delta = _clean_delta(problem, batch, abl, sink)
        mask = _mask(problem).requires_grad_(True)
        if corrupted:
            plan, ids = PatchPlan(mask=mask, delta=delta, labels=labels), batch.corrupted
        else:
            plan = PatchPlan(mask=mask, delta=delta, embed=_ablated_input(delta, abl),
                             labels=labels)
            ids = None
        _backward(problem, batch, plan, sink=sink, ids=ids)
        got = edge_grads(g.base, delta, sink, labels, g.n_groups)
        total = got if total is None else total.add_(got)
        n += len(batch)
    return g.from_dense(-(total / (2 * n))).cpu()


# ----- AtP* GradDrop ------------------------------------------------------------------------


def atp_graddrop(problem: Problem, progress: bool = True) -> Scores:
    """AtP* with GradDrop (Kramar et al. 2024, eq. 11) for nodes (the writers: embeddings,
    heads, MLPs): ``mean over examples of 1/(L-1) sum_l |I_l(u)|``, where ``I_l(u) = sum_pos
    (ablated - clean)_u . d m / d out_u`` with no gradient through transformer block ``l``'s
    outputs (its attention and MLP), ``L`` blocks. Nonnegative. Node scores are put on edges
    by :func:`node_scores_on_edges` (an edge scores as the less important of its two nodes)."""
    _check(problem, "atp-graddrop")
    g = problem.graph
    if g.positions:
        raise AcdcError("atp-graddrop scores nodes, not position-aware edges; run it without "
                        "--positions")
    if g.n_layers < 2:
        raise AcdcError("atp-graddrop needs at least 2 layers (it averages over L - 1 of them)")
    return _scored(problem, _graddrop, progress)


def _node_effects(delta: torch.Tensor, grads: dict, g) -> torch.Tensor:
    """Per writer and example ``sum_{pos, d} delta_u . grad_u`` [W, b] (zero without a
    gradient: its output was held fixed)."""
    out = delta.new_zeros(delta.shape[:2], dtype=torch.float32)
    for row, gr in grads.items():  # gr: [b, p, d] (a writer) or [H, b, p, d] (a layer's heads)
        gr = gr if gr.dim() == 4 else gr[None]
        rows = slice(row, row + len(gr))
        out[rows] = (delta[rows] * gr).sum((2, 3), dtype=torch.float32)
    return out


def _graddrop(problem: Problem, progress: bool) -> Scores:
    g, adapter = problem.graph, problem.model.adapter
    L = g.n_layers
    node = torch.zeros(g.n_writers, dtype=torch.float32)
    n = 0
    for i, batch in enumerate(progress_bar(problem.batches, desc="atp-graddrop",
                                           enabled=progress)):
        abl = problem.ablated(i)
        with torch.no_grad():
            delta = writer_outputs(adapter, batch.clean, context=problem.context)
        if abl is not None:
            delta.sub_(abl)  # clean - ablated
        acc = torch.zeros(g.n_writers, len(batch), dtype=torch.float32)
        for layer in range(L):
            grads: dict = {}
            frozen = _Frozen(adapter, (layer,), (layer,), grads)
            logits = run(frozen, batch.clean, PatchPlan(), ReadOut.of(batch), problem.context)
            problem.metric.score(logits, batch).sum().backward()
            acc += _node_effects(delta, grads, g).abs().cpu()
        node += acc.sum(1) / (L - 1)
        n += len(batch)
    node /= n
    return g.from_dense(node_scores_on_edges(g, node)).cpu()


def node_scores_on_edges(g, node: torch.Tensor) -> torch.Tensor:
    """Dense [W, R] edge scores from per-writer node scores ``node`` [W] (nonnegative): edge
    ``u -> v`` scores ``min(node[u], node[v's node])``, the logits counting as infinite, so an
    edge is as important as the less important of the nodes it joins, and a node's largest
    edge score is its own (every writer feeds the logits)."""
    readers = torch.tensor([float("inf") if r.kind is NodeKind.LOGITS else
                            float(node[g.writer_index(r)]) for r, _ in g.readers()])
    return torch.minimum(node[:, None], readers[None, :]).to(torch.float32)
