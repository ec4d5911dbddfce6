"""The decoder-only adapter every built-in family except GPT-2 specializes.

A pre-norm decoder block reads the residual stream through a norm into attention (q, k, v
projections, optional per-head q/k norms, rotary positions, a causal mask with an optional
sliding window, optional score soft-capping, an output projection) and into an MLP. Families
differ in where those weights live and in a few switches; :class:`DecoderAdapter` runs the
common computation head by head and asks the subclass for the parts through small hooks:

    _attn(blk), _attn_norm(blk)      the attention module and the norm in front of it
    _qkv(attn)                       three ``(weight [n, d_head, d_model], bias [n, d_head]|None)``
    _out(attn)                       ``(W_O [d_model, H, d_head], bias [d_model]|None)``
    _qk_norm(attn, q, k)             per-head norms of queries and keys (Qwen3, Gemma 3)
    _tables(layer)                   rotary ``(cos, sin)`` for the layer (None: no rotary)
    _post_attn(blk, heads)           what the layer does to the heads' sum before adding it
    mlp, embed, unembed              the model's own modules

Grouped-query attention: each *query* head is a node with its own q, k and v inputs; a key/value
head's weights are applied to each of its query heads' inputs separately, which is the model's own
computation whenever those inputs agree (the unpatched run).
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from acdc_engine.models import ModelAdapter
from acdc_engine.patching.head_writes import per_head, write_sum
from acdc_engine.patching.norms import norm_project, shared_norm

__all__ = ["DecoderAdapter", "attend", "project", "layer_window"]


def project(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, n_heads: int):
    """Residual ``x`` ([b,p,d] shared or [H,b,p,d] per query head) through per-head weights
    ``w`` [n, d_head, d] (n = H, or the key/value heads under GQA) -> [b, H, p, d_head]."""
    n = w.shape[0]
    if x.dim() == 3:  # shared input: project once per (kv) head, then share across the group
        y = torch.einsum("bpd,nkd->bnpk", x, w)
        if b is not None:
            y = y + b[:, None]
        return y if n == n_heads else y.repeat_interleave(n_heads // n, dim=1)
    if n != n_heads:  # GQA: group the query heads by their key/value head, no weight copies
        H, bsz, p, d = x.shape
        y = torch.einsum("ngbpd,nkd->bngpk", x.reshape(n, H // n, bsz, p, d), w)
        if b is not None:
            y = y + b[:, None, None]  # [n, 1, 1, d_head] over [b, n, g, p, d_head]
        return y.reshape(bsz, H, p, w.shape[1])
    y = torch.einsum("hbpd,hkd->bhpk", x, w)
    return y if b is None else y + b[:, None]


def attend(q, k, v, scale: float, window: int | None = None, softcap: float | None = None):
    """Causal attention: q [b, H, pq, d_head] holds the *last* pq positions, k and v [b, H, pk,
    d_head] all of them -> [b, H, pq, d_head].

    ``window``: query i sees keys j with i - window < j <= i (the transformers convention), for
    prompts of any length. ``softcap``: scores become ``softcap * tanh(scores / softcap)``
    before the mask (Gemma 2)."""
    pq, pk = q.shape[-2], k.shape[-2]
    limited = window is not None and window < pk
    if softcap is None and not limited and pq in (pk, 1):  # the fast paths
        return F.scaled_dot_product_attention(q, k, v, is_causal=pq == pk > 1, scale=scale)
    qpos = torch.arange(pk - pq, pk, device=q.device)[:, None]  # [pq, 1]
    kpos = torch.arange(pk, device=q.device)[None]  # [1, pk]
    allowed = kpos <= qpos
    if limited:
        allowed = allowed & (kpos > qpos - window)
    if softcap is None:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)
    scores = (q @ k.transpose(-1, -2)) * scale  # [b, H, pq, pk]
    scores = softcap * torch.tanh(scores / softcap)
    scores = scores.masked_fill(~allowed, float("-inf"))
    probs = scores.softmax(-1, dtype=torch.promote_types(q.dtype, torch.float32)).to(q.dtype)
    return probs @ v


def layer_window(attn, config) -> int | None:
    """The sliding window of one attention layer: the module's own ``sliding_window`` where it
    has one (Qwen2/3, Gemma 2/3: per layer type), else the config's (Mistral, Phi-3, Mixtral)."""
    if hasattr(attn, "sliding_window"):
        return attn.sliding_window
    if not getattr(config, "use_sliding_window", True):
        return None
    return getattr(config, "sliding_window", None)


class DecoderAdapter(ModelAdapter):
    """A pre-norm decoder run head by head. Subclasses set, in ``__init__``: ``base`` (the
    decoder module), ``layers``, ``n_layers``, ``n_heads``, ``n_kv``, ``d_model``, ``d_head``
    (and ``config`` when the decoder's config is not ``model.config``), then call
    :meth:`_setup`."""

    attn_softcap: float | None = None
    final_softcap: float | None = None

    def _setup(self):
        """Per-layer windows and the rotary function, once the parts are known."""
        cfg = getattr(self, "config", None)
        cfg = self.model.config if cfg is None else cfg
        self.windows = [layer_window(self._attn(b), cfg) for b in self.layers]
        mod = sys.modules[type(self._attn(self.layers[0])).__module__]
        self._rope = getattr(mod, "apply_rotary_pos_emb", None)
        self._cos_sin, self._key = None, None

    # ----- hooks (Llama-style defaults) ------------------------------------------------------
    def _attn(self, blk):
        return blk.self_attn

    def _attn_norm(self, blk):
        return blk.input_layernorm

    def _heads_weight(self, lin, n):
        w = lin.weight.view(n, self.d_head, self.d_model)
        b = None if lin.bias is None else lin.bias.view(n, self.d_head)
        return w, b

    def _qkv(self, attn):
        return (self._heads_weight(attn.q_proj, self.n_heads),
                self._heads_weight(attn.k_proj, self.n_kv),
                self._heads_weight(attn.v_proj, self.n_kv))

    def _out(self, attn):
        lin = attn.o_proj
        return lin.weight.view(self.d_model, self.n_heads, self.d_head), lin.bias

    def _scale(self, attn) -> float:
        return attn.scaling

    def _qk_norm(self, attn, qh, kh):
        if hasattr(attn, "q_norm"):  # Qwen3, Gemma 3: RMSNorm over each head's query and key
            return attn.q_norm(qh), attn.k_norm(kh)
        return qh, kh

    def _rotary(self, probe, pos):
        """``(cos, sin)`` for positions ``pos`` [1, p] (None: no rotary embeddings)."""
        return self.base.rotary_emb(probe, pos)

    def _tables(self, layer):
        return self._cos_sin

    def _post_attn(self, blk, heads, bias):
        """heads [H, b, p, d] -> what each head adds to the residual stream; ``bias`` is the
        output projection's bias (added once by :meth:`attn_bias`)."""
        return heads

    def _mlp_norm(self, blk):
        return blk.post_attention_layernorm

    def _final_norm(self):
        return self.base.norm

    # ----- the protocol -----------------------------------------------------------------------
    def prepare(self, input_ids, workspace=None):
        """Rotary tables for this prompt length, shared by every layer of the run."""
        super().prepare(input_ids, workspace)
        p = input_ids.shape[1]
        probe = next(self.model.parameters()).new_zeros(1, 1, 1)  # the tables' dtype
        key = (p, input_ids.device, probe.dtype)
        if self._key == key:
            return
        pos = torch.arange(p, device=input_ids.device)[None]
        self._cos_sin, self._key = self._rotary(probe.to(input_ids.device), pos), key

    def embed(self, input_ids):
        return self.base.embed_tokens(input_ids)  # [b, p, d]

    def attn_heads(self, layer, q, k, v):
        blk, z, w_o, b_o = self._attend(layer, q, k, v)
        heads = per_head(z, w_o.permute(1, 2, 0))  # [H, b, p, d]
        return self._post_attn(blk, heads, b_o)

    def attn_out(self, layer, q, k, v):
        if type(self)._post_attn is not DecoderAdapter._post_attn:  # per-head post-processing
            return super().attn_out(layer, q, k, v)
        _, z, w_o, _ = self._attend(layer, q, k, v)
        return torch.einsum("bhpk,dhk->bpd", z, w_o)  # the heads' writes added up

    def attn_write(self, layer, q, k, v, out):
        if type(self)._post_attn is not DecoderAdapter._post_attn:  # per-head post-processing
            return super().attn_write(layer, q, k, v, out)
        _, z, w_o, _ = self._attend(layer, q, k, v)
        return write_sum(z, w_o.permute(1, 2, 0), out)  # the writes formed in ``out``

    def _attend(self, layer, q, k, v):
        """(block, the heads' attention outputs z [b, H, p, d_head], the output projection's
        weight [d, H, d_head] and bias)."""
        blk = self.layers[layer]
        attn, norm = self._attn(blk), self._attn_norm(blk)
        (wq, bq), (wk, bk), (wv, bv) = self._qkv(attn)
        H = self.n_heads
        # norm_project / shared_norm: one norm per layer when q, k and v are the unpatched
        # stream of a gradient run (EAP, EAP-IG), with the norm's backward fused in
        fused = norm_project(norm, q, k, v, ((wq, bq), (wk, bk), (wv, bv)), H, self.workspace)
        qh, kh, vh = fused or (project(shared_norm(norm, x), w, b, H)
                               for x, (w, b) in ((q, (wq, bq)), (k, (wk, bk)), (v, (wv, bv))))
        # each [b, H, p, d_head]
        qh, kh = self._qk_norm(attn, qh, kh)
        tables = self._tables(layer)
        if tables is not None:
            qh, kh = self._rope(qh, kh, *tables)
        z = attend(qh, kh, vh, self._scale(attn), self.windows[layer], self.attn_softcap)
        return (blk, z, *self._out(attn))

    def attn_bias(self, layer):
        return self._out(self._attn(self.layers[layer]))[1]

    def mlp(self, layer, x):
        blk = self.layers[layer]
        return blk.mlp(self._mlp_norm(blk)(x))

    def mlp_out_proj(self, layer):
        """``mlp.down_proj``: its input is the gated hidden activation ``act(gate) * up``."""
        return self.layers[layer].mlp.down_proj

    def mlp_module(self, layer):
        """``mlp`` (the whole block, a mixture of experts' too): its input is the MLP's norm
        of the residual stream."""
        return self.layers[layer].mlp

    def unembed(self, x):
        return self._softcap(self.model.lm_head(self._final_norm()(x)))

    def unembed_columns(self, x, columns):
        """``unembed(x)[..., columns]`` without the other logits: [..., len(columns)] (a
        family that overrides :meth:`unembed`, e.g. OPT's ``project_out``, gets exactly that)."""
        if type(self).unembed is not DecoderAdapter.unembed:
            return self.unembed(x).index_select(-1, columns)
        head = self.model.lm_head
        bias = None if head.bias is None else head.bias.index_select(0, columns)
        return self._softcap(torch.nn.functional.linear(
            self._final_norm()(x), head.weight.index_select(0, columns), bias))

    def unembed_into(self, x, out):
        """``unembed(x)`` for ``x`` [n, d] written into ``out`` [n, vocab] (a buffer ACDC's
        engine reuses); a family that overrides :meth:`unembed` gets a copy of it."""
        if type(self).unembed is not DecoderAdapter.unembed:
            return out.copy_(self.unembed(x))
        head = self.model.lm_head
        torch.mm(self._final_norm()(x), head.weight.T, out=out)
        if head.bias is not None:
            out.add_(head.bias)
        if self.final_softcap is not None:  # the same arithmetic as _softcap, in place
            out.div_(self.final_softcap).tanh_().mul_(self.final_softcap)
        return out

    def unembed_linear(self):
        """(final norm, weight, bias) when ``unembed(x) == F.linear(norm(x), weight, bias)``;
        None with soft-capping or an overridden :meth:`unembed`."""
        if type(self).unembed is not DecoderAdapter.unembed or self.final_softcap is not None:
            return None
        head = self.model.lm_head
        return self._final_norm(), head.weight, head.bias

    def _softcap(self, logits):
        if self.final_softcap is not None:
            logits = self.final_softcap * torch.tanh(logits / self.final_softcap)
        return logits
