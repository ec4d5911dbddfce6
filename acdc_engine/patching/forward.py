"""The patched forward pass: the one mechanism every edge-level quantity comes from.

In a patched run, node ``v`` reads the residual stream it would read, minus, for every removed
edge ``u->v``, ``out_u(this run) - out_u(ablated)``. With writers stacked on one axis::

    in_v = resid_v + sum_u (mask[u, v] - 1) * delta_u          delta = out(this) - out(ablated)

so a kept edge (mask 1) changes nothing and a removed edge (mask 0) swaps ``u``'s contribution
for its ablated value, for ``v`` alone. Per layer that is one matrix product over the writers
upstream of it (:class:`acdc_engine.patching.reads._Read`).

Layout: writer outputs are stored writer-major, ``[n_writers, batch, pos, d_model]``, in one
preallocated buffer, so the writers upstream of a layer are a prefix view (no copies) and the
sum over writers is a plain GEMM. Per-head inputs are head-major ``[head, batch, pos, d_model]``.

Gradients: when ``mask`` requires grad, ``mask.grad[u, v] = sum_{batch,pos} delta_u . dm/d in_v``
for every edge in one backward pass, holding the deltas fixed (exact at the full circuit, which
is where attribution patching evaluates it). ``delta`` defaults to this run's outputs minus the
ablated ones, taken from the buffer, so EAP needs no separate clean forward pass.

The ablated outputs come from :class:`Ablation`: the corrupted run's writer outputs
(counterfactual, the default), their mean over the task's corrupted prompts, or zero.

Position-aware edges (:meth:`acdc_engine.graph.Graph.with_positions`): a mask
``[n_writers, n_readers, n_groups]`` with per-token group ``labels`` [batch, pos] reads token
``t`` through column ``labels[t]`` of the mask, ``in_v[t] = resid_v[t] + sum_u (mask[u, v,
labels[t]] - 1) * delta_u[t]``: the correction is one product per group over that group's
tokens, and ``mask.grad`` sums per-token products into their groups (:class:`TokenGroups`), the
same multiply-adds as without positions, so the sum over groups of ``mask.grad`` is the
unsplit graph's.

Without gradients, two shortcuts give the same result (up to float rounding) for less work:
a writer whose every edge is removed (a node ablation) writes its ablated output into the
residual stream once instead of being corrected at every reader (:func:`_gone`), and the
per-reader correction multiplies only the writers with a removed edge. Inside
:func:`reuse_prefix`, a run also starts at the first layer with a removed edge, from the clean
run's residual stream there (:class:`Prefix`; the ``acdc view`` session uses it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .. import buffers
from ..errors import UnknownNameError
from .grad_sink import GradSink
from ..models.adapter import ModelAdapter
from ..models.norms import recording
from .prefix import Prefix, current_prefix, reuse_prefix
from .reads import Readers, _Backward, _Read, _read_rows, _rows_any
from .token_groups import TokenGroups

__all__ = ["run", "writer_outputs", "Ablation", "ABLATIONS", "Prefix",
           "reuse_prefix"]

ABLATIONS = ("corrupted", "mean", "zero")


def _valid(g, mask: torch.Tensor) -> torch.Tensor:
    """The graph's [W, R] edge pattern, shaped to broadcast against ``mask``."""
    valid = g.valid.to(mask.device)
    return valid if mask.dim() == 2 else valid[:, :, None]


_NODE_FASTPATH = True
"""Apply whole-row removals once in the residual stream (:func:`_gone`); tests turn it off to
compare with the edge-by-edge path."""


def _gone(g, mask: torch.Tensor) -> tuple[list[bool] | None, torch.Tensor]:
    """The node fast path of a run without gradients: (per writer, is every edge it feeds
    removed; the mask with those rows set to 1), or (None, mask) when no row is.

    Such a writer is read as its ablated output by every reader, which is the same as writing
    the ablated output into the residual stream in its place (exactly, up to float rounding);
    its row then needs no per-reader correction, and a node ablation costs one plain run
    instead of a correction product and per-head q/k/v inputs at every later layer. Rows with
    some edges kept (or any fractional entry) keep the edge-by-edge path.
    """
    m = mask.detach()
    valid = _valid(g, m)  # [W, S(, 1)]: u is upstream of v
    full = ~_rows_any((m != 0) & valid) & g.valid.to(m.device).any(1)  # [W]
    if not bool(full.any()):
        return None, mask
    return full.tolist(), m.masked_fill(full.view(-1, *[1] * (m.dim() - 1)), 1)


def _first_layer(g, mask: torch.Tensor) -> int:
    """The layer of the first writer with a removed edge (``g.n_layers`` when none is): every
    writer before that layer computes what it computes in the clean run."""
    rows = _rows_any((mask.detach() < 1) & _valid(g, mask)).nonzero()  # [k, 1]
    if len(rows) == 0:
        return g.n_layers
    w = int(rows[0, 0])
    return 0 if w == 0 else (w - 1) // g.per_layer


def _substitute(out: torch.Tensor, w0: int, substituted: list[bool], ablated) -> torch.Tensor:
    """``out`` [n, b, p, d] (writers ``w0 .. w0 + n``) with the writers ``substituted`` replaced by
    their ablated outputs (zero when ``ablated`` is None); ``out`` itself is not changed."""
    rows = [i for i in range(len(out)) if substituted[w0 + i]]
    if not rows:
        return out
    out = out.clone()
    if ablated is None:
        out[rows] = 0
    else:  # [k, b or 1, p, d], broadcast over the batch
        out[rows] = ablated[[w0 + i for i in rows]].to(out.dtype)
    return out


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
    positions: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
):
    """Run ``adapter``'s model on ``input_ids`` [batch, pos] with edges removed by ``mask``.

    mask:     [n_writers, n_readers], 1 keeps an edge, 0 removes it (None: keep all). If it
              requires grad, backward fills ``mask.grad`` (see the module docstring).
              [n_writers, n_readers, n_groups] for position-aware edges, with ``labels``.
    labels:   [batch, pos] long: each token's position group (a 3-D mask's last index; see
              :class:`acdc_engine.positions.PositionSplit`).
    ablated:  [n_writers, batch or 1, pos, d_model] writer outputs that replace removed edges'
              sources (None: zero ablation).
    delta:    [n_writers, batch, pos, d_model] fixed ``this - ablated`` (EAP-IG), instead of
              this run's outputs minus ``ablated``.
    embed:    [batch, pos, d_model] replaces the embeddings (EAP-IG interpolation).
    collect:  also return every writer's output, [n_writers, batch, pos, d_model] (detached).
    last_only: unembed only the last position.
    positions: [batch, k] long: unembed only the final residual at these positions (a task's
              read positions, ``batch.read_positions``); overrides ``last_only``.
    grad_sink: a :class:`~acdc_engine.patching.grad_sink.GradSink`, or a tensor [n_readers, batch,
              pos, d_model]: backward adds every reader input's gradient there instead of
              filling ``mask.grad`` (``mask`` must still require grad); see
              :func:`acdc_engine.patching.grad_sink.edge_grads`.

    Returns logits [batch, pos or 1 or k, vocab] (and the writer outputs when ``collect``).
    """
    g = adapter.graph
    H = g.n_heads
    adapter.prepare(input_ids)  # per-run state (e.g. rotary tables for this length)
    substituted, grad = None, False  # node fast path: per writer, is its output substituted (_gone)
    first = g.n_layers  # the layer of the first writer with a removed edge
    groups = None
    if mask is not None and mask.dim() == 3:
        if labels is None or tuple(labels.shape) != tuple(input_ids.shape):
            raise ValueError("a position-aware mask [n_writers, n_readers, n_groups] needs "
                             f"labels [batch, pos] = {tuple(input_ids.shape)}, one group per "
                             f"token; got {None if labels is None else tuple(labels.shape)}")
        groups = TokenGroups(labels, mask.shape[2])
    if mask is not None:
        grad = mask.requires_grad
        fast = not grad and grad_sink is None and delta is None and _NODE_FASTPATH
        if fast:
            first = _first_layer(g, mask)
            substituted, mask = _gone(g, mask)
        # columns with no removed edge need no correction in the forward pass
        # per reader column: has it a removed edge (else its input needs no correction)
        patched_cols = ((mask.detach() < 1) & _valid(g, mask)).any(0)  # [R] or [R, G]
        patched_cols = (patched_cols if patched_cols.dim() == 1
                        else patched_cols.any(1)).tolist()
    # a clean prefix (reuse_prefix) lets a run without gradients start at a later layer
    prefix = current_prefix()
    if (prefix is None or prefix.adapter is not adapter or embed is not None or collect
            or grad or grad_sink is not None or delta is not None or not _NODE_FASTPATH):
        prefix = None
    states = None if prefix is None else prefix.states(input_ids)
    start = 0 if states is None else max((n for n in states if n <= first), default=0)
    resid = None if start == 0 else states[start]  # [b, p, d]
    x = (adapter.embed(input_ids) if embed is None else embed) if start == 0 else resid

    # writer outputs, detached: [W, b, p, d]; needed to collect them, for gradients, and for
    # the per-reader corrections of removed edges (unless a fixed delta replaces them)
    need = collect or (delta is None and (grad or (mask is not None and any(patched_cols))))
    buf = buffers.empty((g.n_writers, *x.shape), dtype=x.dtype, device=x.device) if need \
        else None
    n_done = g.attn_upstream(start)  # rows before it are never read when a run resumes
    if buf is not None and start == 0:
        buf[0] = x.detach()
    sink = grad_sink if grad_sink is None or isinstance(grad_sink, GradSink) else \
        GradSink(grad_sink)
    if mask is not None:
        state = (_Backward(buf, ablated, inplace=not collect, sink=sink, groups=groups)
                 if delta is None else _Backward(delta, None, sink=sink, groups=groups))
    # EAP-IG: a layer's q/k/v readers whose input is the unpatched stream are recorded as
    # factors (models.reader_factors), not handed to the sink one reader at a time
    factor_sink = sink if grad and sink is not None and sink.factors_ok else None

    # in a sequential model with MLPs, the MLP before a layer's heads (before the logits) is the
    # reader group backward reaches next: their edge products go in one GEMM (_Backward)
    merge = not (g.parallel or g.attn_only)

    def read(resid: torch.Tensor, n_up: int, cols: slice, parts: tuple,
             before_mlp: bool = False) -> tuple | None:
        """Reader inputs for ``cols``, one [size, b, p, d] tensor per part, or None when no
        edge into ``cols`` is patched. ``before_mlp``: an MLP's readers come right before
        these in the forward pass."""
        if mask is None:
            return None
        patched = any(patched_cols[cols])  # some edge into these readers is removed
        if not patched and not grad:
            return None
        if delta is not None:
            src, abl = delta[:n_up], None
        else:
            src, abl = buf[:n_up], None if ablated is None else ablated[:n_up]
        if not grad and _NODE_FASTPATH:  # no autograd: over the writers with a removed edge
            return _read_rows(resid, mask[:n_up, cols], src, abl, parts, groups)
        group = Readers(cols, parts, merge and before_mlp)
        return _Read.apply(resid, mask, src, abl, patched, state, group)

    # EAP-IG's interpolation steps need no head's own write, only their sum: one dense output
    # projection (other runs add up the heads' writes, so equal runs stay bit-for-bit equal)
    summed = buf is None and substituted is None and delta is not None

    def attend(layer: int, rows: slice, q, k, v) -> torch.Tensor:
        """The heads' writes of ``layer`` (writers ``rows``) added up [b, p, d]; each kept in
        ``buf`` when there is one."""
        if summed:
            return adapter.attn_out(layer, q, k, v)
        if buf is not None and (substituted is None or not any(substituted[rows])):
            return adapter.attn_write(layer, q, k, v, buf[rows])  # formed in the buffer
        heads = adapter.attn_heads(layer, q, k, v)  # [H, b, p, d]
        if buf is not None:
            buf[rows] = heads.detach()
        if substituted is not None:  # removed heads write their ablated output once, for everyone
            heads = _substitute(heads, rows.start, substituted, ablated)
        return heads.sum(0)

    if start == 0:
        resid = x if substituted is None or not substituted[0] else \
            _substitute(x[None], 0, substituted, ablated)[0]
    for layer in range(start, g.n_layers):
        if (states is not None and layer <= first
                and not (layer == 0 and substituted and substituted[0])):
            states.setdefault(layer, resid.detach())  # still the clean run: remember it
        cols = g.attn_slots(layer)
        rows = slice(n_done, n_done + H)
        written = None
        if factor_sink is not None and not any(patched_cols[cols]):  # the readers share one stream
            rec = factor_sink.factors(cols.start, anchor=mask)
            with recording(rec):
                written = attend(layer, rows, resid, resid, resid)
            if not rec.used:  # the family does not share its q/k/v norm: per reader, as below
                written, factor_sink.factors_ok, factor_sink = None, False, None
        if written is None:
            inputs = read(resid, g.attn_upstream(layer), cols, (H, H, H), layer > 0)
            q, k, v = (resid,) * 3 if inputs is None else inputs  # each [H, b, p, d]
            written = attend(layer, rows, q, k, v)
        n_done += H
        resid_pre = resid
        resid = resid + written
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
            if substituted is not None:
                out = _substitute(out[None], n_done, substituted, ablated)[0]
            n_done += 1
            resid = resid + out
    if states is not None and first == g.n_layers:
        states.setdefault(g.n_layers, resid.detach())
    inputs = read(resid, g.n_writers, slice(g.logits_slot, g.logits_slot + 1), (1,), True)
    final = resid if inputs is None else inputs[0][0]
    if positions is not None:  # [b, k] -> the final residual there: [b, k, d]
        idx = positions.to(final.device)[:, :, None].expand(-1, -1, final.shape[-1])
        final = final.gather(1, idx)
    elif last_only:
        final = final[:, -1:]
    logits = adapter.unembed(final)
    if collect:
        return logits, buf
    return logits


def writer_outputs(adapter: ModelAdapter, input_ids: torch.Tensor,
                   mask: torch.Tensor | None = None, ablated: torch.Tensor | None = None,
                   labels: torch.Tensor | None = None) -> torch.Tensor:
    """Every writer's output in a (patched) run, [n_writers, batch, pos, d_model], without
    unembedding anything (the run reads no position: a vocabulary-sized product saved)."""
    none = torch.empty(input_ids.shape[0], 0, dtype=torch.long, device=input_ids.device)
    return run(adapter, input_ids, mask=mask, ablated=ablated, collect=True, positions=none,
               labels=labels)[1]


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
                acts = writer_outputs(adapter, b.corrupted)
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
            acts = writer_outputs(adapter, batch.corrupted)
        return acts
