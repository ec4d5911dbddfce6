"""The patched forward pass: the one mechanism every edge-level quantity comes from.

In a patched run, node ``v`` reads the residual stream it would read, minus, for every removed
edge ``u->v``, ``out_u(this run) - out_u(ablated)``. With writers stacked on one axis::

    in_v = resid_v + sum_u (mask[u, v] - 1) * delta_u          delta = out(this) - out(ablated)

so a kept edge (mask 1) changes nothing and a removed edge (mask 0) swaps ``u``'s contribution
for its ablated value, for ``v`` alone. Per layer that is one matrix product over the writers
upstream of it (:class:`_Read`).

Layout: writer outputs are stored writer-major, ``[n_writers, batch, pos, d_model]``, in one
preallocated buffer, so the writers upstream of a layer are a prefix view (no copies) and the
sum over writers is a plain GEMM. Per-head inputs are head-major ``[head, batch, pos, d_model]``.

Gradients: when ``mask`` requires grad, ``mask.grad[u, v] = sum_{batch,pos} delta_u . dm/d in_v``
for every edge in one backward pass, holding the deltas fixed (exact at the full circuit, which
is where attribution patching evaluates it). ``delta`` defaults to this run's outputs minus the
ablated ones, taken from the buffer, so EAP needs no separate clean forward pass.

The ablated outputs come from :class:`Ablation`: the corrupted run's writer outputs
(counterfactual, the default), their mean over the task's corrupted prompts, or zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .errors import UnknownNameError
from .models.adapter import ModelAdapter

__all__ = ["run", "edge_grads", "Ablation", "ABLATIONS"]

ABLATIONS = ("corrupted", "mean", "zero")


class _Backward:
    """Backward-side state of one patched run: the writers' ``delta`` and an optional sink.

    Every reader's gradient needs ``delta = out - ablated`` for the writers upstream of it;
    backward visits the layers last to first, so the first call sees the whole buffer and later
    calls take a prefix. Forming it once halves the backward products (one GEMM per layer
    instead of two). With a ``sink`` ([n_readers, b, p, d]), backward adds each reader input's
    gradient there instead of forming ``mask.grad``: EAP-IG, whose delta is the same at every
    step, sums the gradients of all steps and forms the edge products once (:func:`edge_grads`).
    """

    def __init__(self, src, abl, *, inplace: bool = False, sink=None):
        self.src, self.abl, self.inplace, self.sink = src, abl, inplace, sink
        self.delta = src if abl is None else None  # no ablated outputs: src is the delta

    def upto(self, n: int) -> torch.Tensor:
        if self.delta is None:  # in place when nobody else holds the buffer: no new 100s of MB
            self.delta = self.src.sub_(self.abl) if self.inplace else self.src - self.abl
        return self.delta[:n]


class _Read(torch.autograd.Function):
    """``resid[None] + (m - 1)^T @ (src - abl)``: inputs of ``s`` readers from ``n`` writers.

    resid [b, p, dm]; m [n, s]; src [n, b, p, dm] and abl [n, b or 1, p, dm] (or None) are
    constants, used as views (the difference is never materialized in the forward pass) ->
    one [size, b, p, dm] tensor per entry of ``parts`` (sizes summing to s), so callers get
    q, k and v separately and backward never concatenates their gradients.
    ``touched`` False skips the product in the forward pass (every entry of m is 1).
    """

    @staticmethod
    def forward(ctx, resid, m, src, abl, touched: bool, state: _Backward, cols: slice,
                parts: tuple):
        ctx.state, ctx.n, ctx.cols = state, m.shape[0], cols
        n, s = m.shape
        out = resid.unsqueeze(0).expand(s, *resid.shape)
        if touched:
            mt = (m - 1).T.to(src.dtype)  # [s, n]
            corr = (mt @ src.reshape(n, -1)).view(s, *src.shape[1:])
            if abl is not None:
                corr = corr - (mt @ abl.reshape(n, -1)).view(s, *abl.shape[1:])
            out = out + corr
        return out.split(parts, dim=0)

    @staticmethod
    def backward(ctx, *grads):
        g_m, state = None, ctx.state
        if state.sink is not None:  # per part: no concatenation
            start = ctx.cols.start
            for g in grads:
                state.sink[start : start + len(g)] += g
                start += len(g)
        elif ctx.needs_input_grad[1]:
            # one GEMM over all s readers: it is memory-bound on delta, so read delta once
            grad = grads[0] if len(grads) == 1 else torch.cat(grads)  # [s, b, p, dm]
            d = state.upto(ctx.n).reshape(ctx.n, -1)
            g_m = d @ grad.reshape(grad.shape[0], -1).T  # [n, s]
        g_resid = grads[0].sum(0)
        for g in grads[1:]:
            g_resid += g.sum(0)
        return g_resid, g_m, None, None, None, None, None, None


def run(
    adapter: ModelAdapter,
    input_ids: torch.Tensor,
    *,
    mask: torch.Tensor | None = None,
    ablated: torch.Tensor | None = None,
    delta: torch.Tensor | None = None,
    embed: torch.Tensor | None = None,
    collect: bool = False,
    last_only: bool = False,
    grad_sink: torch.Tensor | None = None,
):
    """Run ``adapter``'s model on ``input_ids`` [batch, pos] with edges removed by ``mask``.

    mask:     [n_writers, n_readers], 1 keeps an edge, 0 removes it (None: keep all). If it
              requires grad, backward fills ``mask.grad`` (see the module docstring).
    ablated:  [n_writers, batch or 1, pos, d_model] writer outputs that replace removed edges'
              sources (None: zero ablation).
    delta:    [n_writers, batch, pos, d_model] fixed ``this - ablated`` (EAP-IG), instead of
              this run's outputs minus ``ablated``.
    embed:    [batch, pos, d_model] replaces the embeddings (EAP-IG interpolation).
    collect:  also return every writer's output, [n_writers, batch, pos, d_model] (detached).
    last_only: unembed only the last position.
    grad_sink: [n_readers, batch, pos, d_model]: backward adds every reader input's gradient
              here instead of filling ``mask.grad`` (``mask`` must still require grad); see
              :func:`edge_grads`.

    Returns logits [batch, pos or 1, vocab] (and the writer outputs when ``collect``).
    """
    g = adapter.graph
    H = g.n_heads
    adapter.prepare(input_ids)  # per-run state (e.g. rotary tables for this length)
    x = adapter.embed(input_ids) if embed is None else embed  # [b, p, d]
    # writer outputs, detached: [W, b, p, d]; a run with a fixed delta needs them only if asked
    buf = x.new_empty((g.n_writers, *x.shape)) if collect or delta is None else None
    n_done = 1
    if buf is not None:
        buf[0] = x.detach()

    if mask is not None:
        # columns with no removed edge need no correction in the forward pass
        touched = ((mask.detach() < 1) & g.valid.to(mask.device)).any(0).tolist()
        grad = mask.requires_grad

        state = (_Backward(buf, ablated, inplace=not collect, sink=grad_sink) if delta is None
                 else _Backward(delta, None, sink=grad_sink))

    def read(resid: torch.Tensor, n_up: int, cols: slice, parts: tuple) -> tuple | None:
        """Reader inputs for ``cols``, one [size, b, p, d] tensor per part, or None when no
        edge into ``cols`` is patched."""
        if mask is None:
            return None
        hit = any(touched[cols])
        if not hit and not grad:
            return None
        if delta is not None:
            src, abl = delta[:n_up], None
        else:
            src, abl = buf[:n_up], None if ablated is None else ablated[:n_up]
        return _Read.apply(resid, mask[:n_up, cols], src, abl, hit, state, cols, parts)

    resid = x
    for layer in range(g.n_layers):
        inputs = read(resid, g.attn_upstream(layer), g.attn_slots(layer), (H, H, H))
        q, k, v = (resid,) * 3 if inputs is None else inputs  # each [H, b, p, d]
        heads = adapter.attn_heads(layer, q, k, v)  # [H, b, p, d]
        if buf is not None:
            buf[n_done : n_done + H] = heads.detach()
        n_done += H
        resid_pre = resid
        resid = resid + heads.sum(0)
        bias = adapter.attn_bias(layer)
        if bias is not None:
            resid = resid + bias
        if not g.attn_only:
            slot = g.mlp_slot(layer)
            inputs = read(resid_pre if g.parallel else resid, g.mlp_upstream(layer),
                          slice(slot, slot + 1), (1,))
            mlp_in = (resid_pre if g.parallel else resid) if inputs is None else inputs[0][0]
            out = adapter.mlp(layer, mlp_in)  # [b, p, d]
            if buf is not None:
                buf[n_done] = out.detach()
            n_done += 1
            resid = resid + out
    inputs = read(resid, g.n_writers, slice(g.logits_slot, g.logits_slot + 1), (1,))
    final = resid if inputs is None else inputs[0][0]
    logits = adapter.unembed(final[:, -1:] if last_only else final)
    if collect:
        return logits, buf
    return logits


def _reader_groups(g):
    """(writers upstream, reader columns) for each group of readers that share a prefix."""
    for layer in range(g.n_layers):
        yield g.attn_upstream(layer), g.attn_slots(layer)
        if not g.attn_only:
            slot = g.mlp_slot(layer)
            yield g.mlp_upstream(layer), slice(slot, slot + 1)
    yield g.n_writers, slice(g.logits_slot, g.logits_slot + 1)


def edge_grads(g, delta: torch.Tensor, sink: torch.Tensor) -> torch.Tensor:
    """``[n_writers, n_readers]`` edge gradients ``sum delta_u . sink_v`` from a ``grad_sink``.

    Equal to the ``mask.grad`` the runs that filled ``sink`` would have summed, for one GEMM
    per reader group in total instead of one per run.
    """
    out = torch.zeros(g.n_writers, g.n_readers, device=delta.device, dtype=torch.float32)
    for n_up, cols in _reader_groups(g):
        s = sink[cols]
        out[:n_up, cols] = (delta[:n_up].reshape(n_up, -1) @ s.reshape(len(s), -1).T).float()
    return out


@dataclass
class Ablation:
    """What replaces a removed edge's source: ``corrupted`` (default), ``mean`` or ``zero``.

    ``mean`` averages the writer outputs over the task's corrupted prompts, per position, for
    each prompt length in the dataset (prompts of one length share a mean).
    """

    kind: str = "corrupted"
    _means: dict = field(default_factory=dict, repr=False)

    def __post_init__(self):
        if self.kind not in ABLATIONS:
            raise UnknownNameError("ablation", self.kind, list(ABLATIONS))

    def fit(self, adapter: ModelAdapter, batches) -> Ablation:
        """Compute the mean activations (only for ``mean``) over ``batches``."""
        if self.kind != "mean":
            return self
        sums: dict[int, tuple[torch.Tensor, int]] = {}
        with torch.no_grad():
            for b in batches:
                _, acts = run(adapter, b.corrupted, collect=True, last_only=True)
                p = b.corrupted.shape[1]
                s, n = sums.get(p, (0, 0))
                sums[p] = (s + acts.sum(1, keepdim=True), n + len(b))
        self._means = {p: s / n for p, (s, n) in sums.items()}
        return self

    def activations(self, adapter: ModelAdapter, batch) -> torch.Tensor | None:
        """The ablated writer outputs for ``batch``: [n_writers, batch or 1, pos, d_model]."""
        if self.kind == "zero":
            return None
        if self.kind == "mean":
            p = batch.corrupted.shape[1]
            if p not in self._means:
                raise RuntimeError("mean ablation needs .fit() on the task's batches first")
            return self._means[p]
        with torch.no_grad():
            _, acts = run(adapter, batch.corrupted, collect=True, last_only=True)
        return acts
