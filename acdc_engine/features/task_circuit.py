"""Task-level sparse feature circuits (Marks et al. 2024) over a task's clean/corrupted pairs.

    scores = score_nodes(problem, transcoders, steps=10)          # every feature and error
    circuit = feature_circuit(problem, transcoders, nodes=40)    # a FeatureCircuit
    circuit.nx, circuit.save("circuit.json")

Nodes are the transcoders' features of every layer and one error node per layer (optionally
per token position), in the replacement model of :func:`~acdc_engine.features.splice.
spliced_run`: each MLP's output is its features decoded plus its error term. Error nodes are
exogenous, as in circuit-tracer's graphs: an error is the clean run's (kept) or the ablated
one's, never recomputed, so keeping every node reproduces the clean run exactly and removing
every node gives the run with every MLP output ablated.

Node scores: attribution patching with integrated gradients, one layer at a time (Marks et
al.'s ``ig`` method): layer ``l``'s activations and error move from clean to ablated
(``a(t) = a_clean + t (a_src - a_clean)``, ``t = 0, 1/(m-1), .., 1`` for ``steps = m``;
``t = 0`` alone for one step, which is plain attribution patching) while every later layer
computes from them; ``score = sum_pos mean_t(dmetric/da(t)) * (a_src - a_clean)``, summed over
examples (summed over positions unless per position). ``a_src`` is the corrupted prompt's
activation (``corrupted``), zero (``zero``) or the mean over the clean tokens (``mean``).

Edges between kept nodes: ``edge(u, d) = sum dmetric/dd * (dd/du) * (u_src - u_clean)``
(Marks et al.), with ``dmetric/dd`` the downstream node's IG-averaged gradient and ``dd/du``
the direct Jacobian at the clean point: every layer's features enter as constants plus a zero
tensor that requires grad, so one backward from each downstream node gives its edges from
every upstream node at once (the other nodes held fixed: direct effects). Edges into the
``metric`` node are each node's direct effect on the metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import AcdcError
from ..patching import ReadOut
from .feature_circuit import METRIC, FeatureCircuit, node_name

__all__ = ["SOURCES", "NodeScores", "score_nodes", "score_edges", "select_nodes",
           "feature_circuit", "batch_runs", "BatchRuns"]

SOURCES = ("corrupted", "zero", "mean")
"""What a removed feature (or error) node becomes."""


@dataclass
class BatchRuns:
    """One batch's clean and source (ablated) activations and errors, per layer: acts
    [b, p, n], errors [b, p, d] (sources broadcast against them)."""

    clean_acts: list[torch.Tensor]
    clean_err: list[torch.Tensor]
    src_acts: list[torch.Tensor]
    src_err: list[torch.Tensor]


def _means(problem, tc) -> tuple[list, list]:
    """Each layer's mean activation [n] and error [d] over the clean prompts' tokens."""
    from .splice import spliced_run

    sa = se = None
    n = 0
    with torch.no_grad():
        for b in problem.batches:
            r = spliced_run(problem.model.adapter, b.clean, tc, readout=ReadOut.of(b))
            a = [x.reshape(-1, x.shape[-1]).double().sum(0) for x in r.acts]
            e = [x.reshape(-1, x.shape[-1]).double().sum(0) for x in r.errors]
            sa = a if sa is None else [u + v for u, v in zip(sa, a)]
            se = e if se is None else [u + v for u, v in zip(se, e)]
            n += b.clean.numel()
    return [x / n for x in sa], [x / n for x in se]


@torch.no_grad()
def batch_runs(problem, tc, batch, source: str = "corrupted", means=None) -> BatchRuns:
    """The clean run's activations and errors of ``batch`` and what removed nodes become
    (``source``: see :data:`SOURCES`; ``means`` from the problem's clean tokens for
    ``mean``)."""
    from .splice import spliced_run

    if source not in SOURCES:
        raise AcdcError(f"unknown ablation {source!r} for feature nodes; use one of "
                        f"{', '.join(SOURCES)}")
    adapter, ro = problem.model.adapter, ReadOut.of(batch)
    c = spliced_run(adapter, batch.clean, tc, readout=ro)
    ca, ce = [a.detach() for a in c.acts], [e.detach() for e in c.errors]
    if source == "corrupted":
        k = spliced_run(adapter, batch.corrupted, tc, readout=ro)
        sa, se = [a.detach() for a in k.acts], [e.detach() for e in k.errors]
    elif source == "zero":
        sa, se = [torch.zeros_like(a) for a in ca], [torch.zeros_like(e) for e in ce]
    else:
        ma, me = means if means is not None else _means(problem, tc)
        sa = [m.to(a.dtype).expand_as(a) for m, a in zip(ma, ca)]
        se = [m.to(e.dtype).expand_as(e) for m, e in zip(me, ce)]
    return BatchRuns(ca, ce, sa, se)


@dataclass
class NodeScores:
    """Per layer, the feature scores ``features[l]`` ([n] summed over positions, or [P, n]
    per position) and the error node's ``errors[l]`` ([] or [P]); ``grads`` keeps each
    batch's IG-averaged gradients (per layer, acts [b, p, n]) for the edges."""

    features: list[torch.Tensor]
    errors: list[torch.Tensor]
    steps: int
    source: str
    per_position: bool = False
    grads: list = field(default_factory=list, repr=False)

    def names_scores(self) -> tuple[list[str], torch.Tensor]:
        """Every node's name and score, features then error per layer (and position)."""
        names, vals = [], []
        for layer, (f, e) in enumerate(zip(self.features, self.errors)):
            if self.per_position:
                for p in range(f.shape[0]):
                    names += [node_name(layer, j, p) for j in range(f.shape[1])]
                    names.append(node_name(layer, None, p))
                    vals += [f[p], e[p:p + 1]]
            else:
                names += [node_name(layer, j) for j in range(f.shape[0])]
                names.append(node_name(layer, None))
                vals += [f, e.reshape(1)]
        return names, torch.cat(vals)


def _score(problem, batch, logits) -> torch.Tensor:
    """The summed metric of a batch's logits at its read positions."""
    return problem.metric.score(logits, batch).sum()


STACKED_ROWS = 128
"""IG steps run stacked along the batch, up to this many prompts a run."""


def _layer_ig(problem, tc, batch, runs: BatchRuns, layer: int, steps: int):
    """IG-averaged gradients of the summed metric w.r.t. ``layer``'s activations and error
    (the layer moved from clean to source, the rest computed from it). The steps run stacked
    along the batch (``STACKED_ROWS`` prompts a run): one forward and backward per chunk."""
    from .splice import spliced_run

    adapter = problem.model.adapter
    ca, ce = runs.clean_acts[layer], runs.clean_err[layer]
    da, de = runs.src_acts[layer] - ca, runs.src_err[layer] - ce
    ga, ge = torch.zeros_like(ca), torch.zeros_like(ce)
    ts = torch.zeros(1) if steps == 1 else torch.linspace(0, 1, steps)
    B = batch.clean.shape[0]
    per_run = max(1, STACKED_ROWS // B)
    base = ReadOut.of(batch)
    for c in range(0, len(ts), per_run):
        t = ts[c:c + per_run].to(ca.device, ca.dtype)  # [m]
        m = len(t)
        a = (ca[None] + t[:, None, None, None] * da[None]).reshape(m * B, *ca.shape[1:])
        e = (ce[None] + t[:, None, None, None] * de[None]).reshape(m * B, *ce.shape[1:])
        a.requires_grad_(True)
        e.requires_grad_(True)
        errs = [e if j == layer else runs.clean_err[j].repeat(m, 1, 1)
                for j in range(tc.n_layers)]
        ro = base if base.positions is None else ReadOut.at(base.positions.repeat(m, 1))
        out = spliced_run(adapter, batch.clean.repeat(m, 1), tc, errors=errs,
                          edit=lambda j, acts, a=a: a if j == layer else acts, readout=ro)
        total = sum(_score(problem, batch, chunk) for chunk in out.logits.split(B))
        g1, g2 = torch.autograd.grad(total, [a, e])
        ga += g1.reshape(m, *ca.shape).sum(0)
        ge += g2.reshape(m, *ce.shape).sum(0)
    return ga / len(ts), ge / len(ts)


def score_nodes(problem, transcoders, steps: int = 10, source: str = "corrupted",
                per_position: bool = False) -> NodeScores:
    """Every feature's and error node's IG attribution-patching score (see the module
    docstring), summed over the problem's examples; ``steps`` >= 1 (1: plain attribution
    patching)."""
    from .splice import check_transcoders

    if steps < 1:
        raise AcdcError(f"integrated gradients need at least 1 step, got {steps}")
    if not problem.metric.differentiable:
        raise AcdcError(f"metric {problem.metric.name!r} is not differentiable: feature "
                        "circuits need its gradient")
    check_transcoders(problem.model.adapter, transcoders)
    if per_position and len({b.clean.shape[1] for b in problem.batches}) != 1:
        raise AcdcError("per-position feature nodes need prompts of one length; this task's "
                        "batches have several")
    means = _means(problem, transcoders) if source == "mean" else None
    L = transcoders.n_layers
    feats, errs, grads = [None] * L, [None] * L, []
    dims = (0,) if per_position else (0, 1)
    for batch in problem.batches:
        runs = batch_runs(problem, transcoders, batch, source, means)
        g_batch = []
        for layer in range(L):
            ga, ge = _layer_ig(problem, transcoders, batch, runs, layer, steps)
            g_batch.append(ga)
            fa = (ga * (runs.src_acts[layer] - runs.clean_acts[layer])).sum(dims).double()
            fe = (ge * (runs.src_err[layer] - runs.clean_err[layer])).sum(-1).sum(dims).double()
            feats[layer] = fa if feats[layer] is None else feats[layer] + fa
            errs[layer] = fe if errs[layer] is None else errs[layer] + fe
        grads.append(g_batch)
    return NodeScores([f.float().cpu() for f in feats], [e.float().cpu() for e in errs],
                      steps, source, per_position, grads)


def select_nodes(scores: NodeScores, nodes: int | None = None,
                 threshold: float | None = None) -> dict[str, float]:
    """The kept nodes (name -> score): the top ``nodes`` by ``|score|``, or every node with
    ``|score| >= threshold`` (exactly one of them); zero scores are never kept."""
    if (nodes is None) == (threshold is None):
        raise AcdcError("choose the feature circuit by exactly one of nodes or threshold")
    names, vals = scores.names_scores()
    mag = vals.abs()
    if nodes is not None:
        if nodes < 0:
            raise AcdcError(f"the node budget must be >= 0, got {nodes}")
        idx = mag.argsort(descending=True, stable=True)[:nodes].tolist()
    else:
        idx = (mag >= threshold).nonzero()[:, 0].tolist()
    return {names[i]: float(vals[i]) for i in sorted(idx) if mag[i] > 0}


def _parse(name: str):
    from .feature_circuit import parse_feature_node

    return parse_feature_node(name)


def score_edges(problem, transcoders, scores: NodeScores,
                kept: dict[str, float]) -> dict[tuple[str, str], float]:
    """Edges among the ``kept`` nodes and into the metric (see the module docstring): one
    forward per batch, one backward per kept downstream feature node."""
    from .splice import spliced_run

    adapter, L = problem.model.adapter, transcoders.n_layers
    parsed = {n: _parse(n) for n in kept}
    feats = [n for n, (_, f, _) in parsed.items() if f is not None]
    edges: dict[tuple[str, str], float] = {}
    means = _means(problem, transcoders) if scores.source == "mean" else None

    def add(key, v):
        edges[key] = edges.get(key, 0.0) + v

    def pull(grads_a, grads_e, runs, target_layer, sink):
        """Add ``grad * delta`` for every kept upstream node below ``target_layer``."""
        for up, (li, fi, pi) in parsed.items():
            if li >= target_layer:
                continue
            if fi is None:
                g, d = grads_e[li], runs.src_err[li] - runs.clean_err[li]
                v = g * d if g is not None else None
                v = None if v is None else v.sum(-1)  # [b, p]
            else:
                g = grads_a[li]
                v = None if g is None else \
                    g[..., fi] * (runs.src_acts[li] - runs.clean_acts[li])[..., fi]
            if v is not None:
                add((up, sink), float(v.sum() if pi is None else v[:, pi].sum()))

    for bi, batch in enumerate(problem.batches):
        runs = batch_runs(problem, transcoders, batch, scores.source, means)
        da = [torch.zeros_like(a).requires_grad_(True) for a in runs.clean_acts]
        de = [torch.zeros_like(e).requires_grad_(True) for e in runs.clean_err]
        live = {}

        def edit(j, acts, da=da, live=live):
            live[j] = acts
            return acts.detach() + da[j]

        out = spliced_run(adapter, batch.clean, transcoders,
                          errors=[e + d for e, d in zip(runs.clean_err, de)], edit=edit,
                          readout=ReadOut.of(batch))
        metric = _score(problem, batch, out.logits)
        g = torch.autograd.grad(metric, da + de, retain_graph=True, allow_unused=True)
        pull(g[:L], g[L:], runs, L, METRIC)
        for down in feats:
            lj, fj, pj = parsed[down]
            if lj == 0:
                continue
            w = scores.grads[bi][lj][..., fj]  # [b, p]: the downstream node's IG gradient
            x = live[lj][..., fj]
            target = (w * x).sum() if pj is None else (w[:, pj] * x[:, pj]).sum()
            if not target.requires_grad:
                continue
            g = torch.autograd.grad(target, da[:lj] + de[:lj], retain_graph=True,
                                    allow_unused=True)
            pull(list(g[:lj]) + [None] * (L - lj), list(g[lj:]) + [None] * (L - lj), runs,
                 lj, down)
    return {k: v for k, v in edges.items() if v != 0.0}


def feature_circuit(problem, transcoders, *, nodes: int | None = None,
                    threshold: float | None = None, steps: int = 10,
                    source: str = "corrupted", per_position: bool = False,
                    scores: NodeScores | None = None) -> FeatureCircuit:
    """The sparse feature circuit of ``problem``: node scores (:func:`score_nodes`, or
    ``scores`` already computed), the top ``nodes`` or those above ``threshold``, the edges
    among them (:func:`score_edges`); attributes say how it was made."""
    scores = scores or score_nodes(problem, transcoders, steps, source, per_position)
    kept = select_nodes(scores, nodes, threshold)
    edges = score_edges(problem, transcoders, scores, kept)
    return FeatureCircuit(kept, edges, {
        "model": problem.model.id, "metric": problem.metric.name, "ablation": scores.source,
        "method": "sfc-ig" if scores.steps > 1 else "sfc-atp", "ig_steps": scores.steps,
        "per_position": per_position, "n_nodes_total": len(scores.names_scores()[0])})
