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
per-reader correction multiplies only the writers with a removed edge. With a
``Context(prefix=...)``, a run also starts at the first layer with a removed edge, from the clean
run's residual stream there (:class:`Prefix`; the ``acdc view`` session uses it).

The entry points take three objects (:mod:`acdc_engine.patching.plan`): a :class:`PatchPlan`
(what the run changes), a :class:`ReadOut` (which logits it unembeds) and a :class:`Context`
(how it computes: the prefix, the workspace of the fused kernels, the fuse switch, the node
fast path, the gradient sink). :func:`run` returns the logits, :func:`run_with_writers` the
logits and every writer's output, :func:`writer_outputs` the writer outputs alone. One run is
one :class:`_Pass`: its state, its reader groups (:meth:`_Pass.read`) and its attention writes
(:meth:`_Pass.attend`), layer by layer (:meth:`_Pass.layers`).
"""

from __future__ import annotations

import inspect
from functools import lru_cache

import torch

from .. import buffers
from ..models.adapter import ModelAdapter
from .frozen import Freezer, FrozenAttentionMode, freeze_norms
from .grad_sink import GradSink
from .mlp_hooks import mlp_node
from .plan import ALL, DEFAULT, NO_PATCH, Context, PatchPlan, ReadOut
from .reads import Readers, _Backward, _Read, _read_rows, _rows_any
from .token_groups import TokenGroups

__all__ = ["run", "run_with_writers", "writer_outputs"]


def run(adapter: ModelAdapter, input_ids: torch.Tensor, plan: PatchPlan = NO_PATCH,
        readout: ReadOut = ALL, context: Context = DEFAULT) -> torch.Tensor:
    """Logits of ``adapter``'s model on ``input_ids`` [batch, pos] with ``plan``'s changes, at
    ``readout``'s positions: [batch, pos or 1 or k, vocab]. Differentiable in ``plan.mask``
    (and ``plan.embed``) when they require grad (see the module docstring)."""
    return _Pass(adapter, input_ids, plan, context, keep=False).logits(readout)


def run_with_writers(adapter: ModelAdapter, input_ids: torch.Tensor, plan: PatchPlan = NO_PATCH,
                     readout: ReadOut = ALL,
                     context: Context = DEFAULT) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`run`'s logits and every writer's output in the run, [n_writers, batch, pos,
    d_model] (detached; the embeddings first, then each layer's heads and MLP)."""
    one = _Pass(adapter, input_ids, plan, context, keep=True)
    return one.logits(readout), one.buf


def writer_outputs(adapter: ModelAdapter, input_ids: torch.Tensor, plan: PatchPlan = NO_PATCH,
                   context: Context = DEFAULT) -> torch.Tensor:
    """Every writer's output in a (patched) run, [n_writers, batch, pos, d_model], without
    unembedding anything (the run reads no position: a vocabulary-sized product saved)."""
    none = torch.empty(input_ids.shape[0], 0, dtype=torch.long, device=input_ids.device)
    return run_with_writers(adapter, input_ids, plan, ReadOut.at(none), context)[1]


def _valid(g, mask: torch.Tensor) -> torch.Tensor:
    """The graph's [W, R] edge pattern, shaped to broadcast against ``mask``."""
    valid = g.valid.to(mask.device)
    return valid if mask.dim() == 2 else valid[:, :, None]


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


@lru_cache(maxsize=None)
def _takes_workspace(cls: type) -> bool:
    """Does ``cls.prepare`` accept the workspace (``prepare(input_ids, workspace)``)? A family
    written before it did keeps working: its adapter gets the workspace as an attribute."""
    params = list(inspect.signature(cls.prepare).parameters.values())
    return len(params) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params)


def _prepare(adapter: ModelAdapter, input_ids: torch.Tensor, workspace) -> None:
    """``adapter.prepare(input_ids, workspace)``: per-run state, and the run's workspace."""
    if _takes_workspace(type(adapter)):
        adapter.prepare(input_ids, workspace)
    else:
        adapter.prepare(input_ids)
        adapter.workspace = workspace


def _token_groups(plan: PatchPlan, input_ids: torch.Tensor) -> TokenGroups | None:
    """The per-token groups of a position-aware mask [W, R, G] (None for a 2-D mask)."""
    mask, labels = plan.mask, plan.labels
    if mask is None or mask.dim() != 3:
        return None
    if labels is None or tuple(labels.shape) != tuple(input_ids.shape):
        raise ValueError("a position-aware mask [n_writers, n_readers, n_groups] needs "
                         f"labels [batch, pos] = {tuple(input_ids.shape)}, one group per "
                         f"token; got {None if labels is None else tuple(labels.shape)}")
    return TokenGroups(labels, mask.shape[2])


class _Pass:
    """One patched run: what it decided before the first layer, and its reader groups.

    Fields: ``mask`` (the plan's, with node-ablated rows set to 1 on the node fast path),
    ``substituted`` (per writer, is its output replaced by its ablated one once: :func:`_gone`),
    ``patched_cols`` (per reader column, has it a removed edge), ``first`` (the layer of the
    first writer with a removed edge), ``buf`` (the writer outputs [W, b, p, d], when the run
    needs or keeps them), ``state`` (the backward's :class:`_Backward`), ``states`` (the
    prefix's clean residual streams for these inputs), ``start`` (the layer the run starts at).
    """

    def __init__(self, adapter: ModelAdapter, input_ids: torch.Tensor, plan: PatchPlan,
                 context: Context, keep: bool):
        g = self.g = adapter.graph
        self.adapter, self.plan, self.context, self.keep = adapter, plan, context, keep
        self.ws = context.resolved_workspace()
        _prepare(adapter, input_ids, self.ws)  # per-run state (e.g. rotary tables), workspace
        mask, delta, sink = plan.mask, plan.delta, context.grad_sink
        self.substituted, self.grad = None, False
        self.first = g.n_layers
        self.groups = _token_groups(plan, input_ids)
        self.patched_cols = None
        if mask is not None:
            self.grad = mask.requires_grad
            if not self.grad and sink is None and delta is None and context.node_fastpath:
                self.first = _first_layer(g, mask)
                self.substituted, mask = _gone(g, mask)
            # per reader column: has it a removed edge (else its input needs no correction)
            cols = ((mask.detach() < 1) & _valid(g, mask)).any(0)  # [R] or [R, G]
            self.patched_cols = (cols if cols.dim() == 1 else cols.any(1)).tolist()
        self.mask = mask
        # a clean prefix lets a run without gradients start at a later layer
        prefix = context.prefix
        if (prefix is None or prefix.adapter is not adapter or plan.embed is not None or keep
                or self.grad or sink is not None or delta is not None or plan.neurons
                or not context.node_fastpath or plan.mlps is not None or context.freeze):
            prefix = None
        self.states = None if prefix is None else prefix.states(input_ids)
        self.start = 0 if self.states is None else \
            max((n for n in self.states if n <= self.first), default=0)
        resume = self.start > 0
        x = self.states[self.start] if resume else \
            adapter.embed(input_ids) if plan.embed is None else plan.embed  # [b, p, d]
        self.x = x
        # writer outputs, detached: [W, b, p, d]; needed to keep them, for gradients, and for
        # the per-reader corrections of removed edges (unless a fixed delta replaces them)
        need = keep or (delta is None and (self.grad or (mask is not None
                                                         and any(self.patched_cols))))
        self.buf = buffers.empty((g.n_writers, *x.shape), dtype=x.dtype, device=x.device) \
            if need else None
        # unless the outputs themselves are kept, the buffer holds each writer's delta, out -
        # ablated, formed as the output is written: a removed edge's correction is then one
        # product, and backward reads the same delta (the same subtraction, done earlier)
        self.as_delta = (self.buf is not None and not keep and delta is None
                         and plan.ablated is not None)
        if self.buf is not None and not resume:
            self.buf[0] = x.detach()
            self._to_delta(slice(0, 1))
        self.sink = sink if sink is None or isinstance(sink, GradSink) else GradSink(sink)
        if mask is not None:
            self.state = (
                _Backward(self.buf, None if self.as_delta else plan.ablated, self.ws,
                          inplace=not keep, sink=self.sink, groups=self.groups)
                if delta is None else
                _Backward(delta, None, self.ws, sink=self.sink, groups=self.groups))
        # EAP-IG: a layer's q/k/v readers whose input is the unpatched stream are recorded as
        # factors (patching.reader_factors), not handed to the sink one reader at a time
        self.factor_sink = self.sink if self.grad and self.sink is not None \
            and self.sink.factors_ok else None
        # in a sequential model with MLPs, the MLP before a layer's heads (before the logits) is
        # the reader group backward reaches next: their edge products go in one GEMM (_Backward)
        self.merge = not (g.parallel or g.attn_only)
        # EAP-IG's interpolation steps need no head's own write, only their sum: one dense
        # output projection (other runs add up the heads' writes, so equal runs stay equal)
        self.summed = self.buf is None and self.substituted is None and delta is not None
        # a frozen run: norm scales constant for gradients (hooks removed after the run) and
        # attention patterns too (:meth:`attention` detaches q and k)
        self.hooks, self.freezer = [], None
        if context.freeze:
            self.freezer = context.freeze if isinstance(context.freeze, Freezer) else Freezer()
            adapter.frozen = self.freezer
            self.hooks = freeze_norms(adapter.model, self.freezer)
            self.mode = FrozenAttentionMode()
            self.mode.__enter__()  # left in logits()

    def _to_delta(self, rows: slice) -> None:
        """Buffer rows ``rows`` from outputs to deltas (``out - ablated``), when it holds them."""
        if self.as_delta:
            self.buf[rows].sub_(self.plan.ablated[rows])

    def read(self, resid: torch.Tensor, n_up: int, cols: slice, parts: tuple,
             before_mlp: bool = False) -> tuple | None:
        """Reader inputs for ``cols``, one [size, b, p, d] tensor per part, or None when no
        edge into ``cols`` is patched. ``before_mlp``: an MLP's readers come right before
        these in the forward pass."""
        if self.mask is None:
            return None
        patched = any(self.patched_cols[cols])  # some edge into these readers is removed
        if not patched and not self.grad:
            return None
        delta, ablated = self.plan.delta, self.plan.ablated
        if delta is not None:
            src, abl = delta[:n_up], None
        elif self.as_delta:  # the buffer holds the deltas already
            src, abl = self.buf[:n_up], None
        else:
            src, abl = self.buf[:n_up], None if ablated is None else ablated[:n_up]
        if not self.grad and self.context.node_fastpath:  # no autograd: the removed rows
            return _read_rows(resid, self.mask[:n_up, cols], src, abl, parts, self.groups)
        group = Readers(cols, parts, self.merge and before_mlp)
        return _Read.apply(resid, self.mask, src, abl, patched, self.state, group)

    def attend(self, layer: int, rows: slice, q, k, v) -> torch.Tensor:
        """The heads' writes of ``layer`` (writers ``rows``) added up [b, p, d]; each kept in
        the writer buffer when there is one."""
        adapter, buf, substituted = self.adapter, self.buf, self.substituted
        if self.summed:
            return adapter.attn_out(layer, q, k, v)
        if buf is not None and (substituted is None or not any(substituted[rows])):
            written = adapter.attn_write(layer, q, k, v, buf[rows])  # formed in the buffer
            self._to_delta(rows)
            return written
        heads = adapter.attn_heads(layer, q, k, v)  # [H, b, p, d]
        if buf is not None:
            buf[rows] = heads.detach()
            self._to_delta(rows)
        if substituted is not None:  # removed heads write their ablated output once, for all
            heads = _substitute(heads, rows.start, substituted, self.plan.ablated)
        return heads.sum(0)

    def attention(self, layer: int, rows: slice, resid: torch.Tensor) -> torch.Tensor:
        """Layer ``layer``'s heads (writers ``rows``) on their inputs read from ``resid``:
        the sum of their writes [b, p, d]."""
        g, cols = self.g, self.g.attn_slots(layer)
        if self.factor_sink is not None and not any(self.patched_cols[cols]):
            # the readers share one stream: record their gradients as factors
            rec = self.factor_sink.factors(cols.start, anchor=self.mask)
            with self.ws.recording(rec):
                written = self.attend(layer, rows, resid, resid, resid)
            if rec.used:
                return written
            # the family does not share its q/k/v norm: per reader, from now on
            self.factor_sink.factors_ok, self.factor_sink = False, None
        H = g.n_heads
        inputs = self.read(resid, g.attn_upstream(layer), cols, (H, H, H), layer > 0)
        q, k, v = (resid,) * 3 if inputs is None else inputs  # each [H, b, p, d]
        if self.freezer is not None:  # the pattern depends on q and k alone: constant
            q, k = self.freezer.constant(q), self.freezer.constant(k)
        return self.attend(layer, rows, q, k, v)

    def mlp(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Layer ``layer``'s MLP node on its input ``x`` [b, p, d], with the plan's neuron
        patch and MLP replacement for it (:mod:`acdc_engine.patching.mlp_hooks`)."""
        return mlp_node(self.adapter, layer, x, self.plan)

    def layers(self) -> torch.Tensor:
        """Run the layers from :attr:`start` on: the final residual stream [b, p, d] (the
        logits' readers' inputs corrected)."""
        g, adapter, substituted = self.g, self.adapter, self.substituted
        states, first, buf, ablated = self.states, self.first, self.buf, self.plan.ablated
        resid = self.x
        if self.start == 0 and substituted is not None and substituted[0]:
            resid = _substitute(resid[None], 0, substituted, ablated)[0]
        n_done = g.attn_upstream(self.start)  # rows before it are never read when resuming
        for layer in range(self.start, g.n_layers):
            if (states is not None and layer <= first
                    and not (layer == 0 and substituted and substituted[0])):
                states.setdefault(layer, resid.detach())  # still the clean run: remember it
            written = self.attention(layer, slice(n_done, n_done + g.n_heads), resid)
            n_done += g.n_heads
            resid_pre = resid
            resid = resid + written
            bias = adapter.attn_bias(layer)
            if bias is not None:
                resid = resid + bias
            if not g.attn_only:
                slot, x = g.mlp_slot(layer), resid_pre if g.parallel else resid
                inputs = self.read(x, g.mlp_upstream(layer), slice(slot, slot + 1), (1,))
                out = self.mlp(layer, x if inputs is None else inputs[0][0])  # [b, p, d]
                if buf is not None:
                    buf[n_done] = out.detach()
                    self._to_delta(slice(n_done, n_done + 1))
                if substituted is not None:
                    out = _substitute(out[None], n_done, substituted, ablated)[0]
                n_done += 1
                resid = resid + out
        if states is not None and first == g.n_layers:
            states.setdefault(g.n_layers, resid.detach())
        cols = slice(g.logits_slot, g.logits_slot + 1)
        inputs = self.read(resid, g.n_writers, cols, (1,), True)
        return resid if inputs is None else inputs[0][0]

    def logits(self, readout: ReadOut) -> torch.Tensor:
        """The run's logits at ``readout``'s positions."""
        try:
            return self.adapter.unembed(readout.final(self.layers()))
        finally:
            self.adapter.workspace = None  # the run's own; kernels called later get none
            if self.freezer is not None:
                self.mode.__exit__(None, None, None)
                self.adapter.frozen = None
                for handle in self.hooks:
                    handle.remove()
