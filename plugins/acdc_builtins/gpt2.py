"""GPT-2 family adapter: Hugging Face ``GPT2LMHeadModel`` run head by head with its own weights.

GPT-2's ``c_attn`` is a Conv1D (``y = x @ W + b``) with ``W: [d_model, 3 * d_model]`` holding
Q, K and V side by side; head ``h`` owns columns ``h * d_head : (h + 1) * d_head`` of each.
``c_proj.weight: [d_model, d_model]`` has one block of ``d_head`` rows per head, so a head's
write to the residual stream is ``z_h @ W_O[h]``; ``c_proj.bias`` is the layer's constant.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from acdc_engine.models import ModelAdapter, ModelFamily
from acdc_engine.patching.head_writes import per_head, write_sum
from acdc_engine.patching.norms import norm_project, shared_norm


class GPT2Adapter(ModelAdapter):
    def __init__(self, model):
        super().__init__(model)
        cfg = model.config
        self.tf = model.transformer
        self.n_layers, self.n_heads, self.d_model = cfg.n_layer, cfg.n_head, cfg.n_embd
        self.d_head = self.d_model // self.n_heads
        self.scale_weights = getattr(cfg, "scale_attn_weights", True)
        self.inverse_layer = getattr(cfg, "scale_attn_by_inverse_layer_idx", False)

    def embed(self, input_ids):
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        return self.tf.wte(input_ids) + self.tf.wpe(pos)[None]  # [b, p, d]

    def _proj(self, block, x, which: int, idx=None):
        """Project residual ``x`` ([b,p,d] shared or [n,b,p,d] per head) -> [b, n, p, d_head],
        for all heads or the heads ``idx``."""
        d, H, dh = self.d_model, self.n_heads, self.d_head
        w = block.attn.c_attn.weight[:, which * d : (which + 1) * d].view(d, H, dh)
        b = block.attn.c_attn.bias[which * d : (which + 1) * d].view(H, 1, dh)
        if idx is not None:
            w, b = w.index_select(1, idx), b.index_select(0, idx)
        x = shared_norm(block.ln_1, x)  # once per layer when the readers share their input (EAP)
        if x.dim() == 3:
            return torch.einsum("bpd,dhk->bhpk", x, w) + b
        return torch.einsum("hbpd,dhk->bhpk", x, w) + b

    def _heads(self, layer, q, k, v, idx=None, summed: bool = False, out=None):
        block = self.tf.h[layer]
        fused = None if idx is not None else self._norm_project(block, q, k, v)
        qh, kh, vh = fused or (self._proj(block, x, i, idx) for i, x in enumerate((q, k, v)))
        scale = 1 / math.sqrt(self.d_head) if self.scale_weights else 1.0
        if self.inverse_layer:
            scale /= layer + 1
        causal = qh.shape[-2] == kh.shape[-2]  # else the last query alone: it sees everything
        z = F.scaled_dot_product_attention(qh, kh, vh, is_causal=causal, scale=scale)
        w_o = block.attn.c_proj.weight.view(self.n_heads, self.d_head, self.d_model)
        if idx is not None:
            w_o = w_o.index_select(0, idx)
        if summed:  # the heads' writes added up: one dense output projection
            return torch.einsum("bhpk,hkd->bpd", z, w_o)  # [b, p, d]
        if out is not None:  # the writes formed in the writer buffer, their sum returned
            return write_sum(z, w_o, out)
        return per_head(z, w_o)  # [n, b, p, d]

    def _norm_project(self, block, q, k, v):
        """q, k, v projections [b, H, p, d_head] in one step when the three inputs are the
        unpatched stream of a gradient run (EAP, EAP-IG: :func:`norm_project`), else None."""
        d, H, dh = self.d_model, self.n_heads, self.d_head
        w = block.attn.c_attn.weight.view(d, 3, H, dh).permute(1, 2, 3, 0)  # [3, H, dh, d]
        b = block.attn.c_attn.bias.view(3, H, dh)
        return norm_project(block.ln_1, q, k, v, [(w[i], b[i]) for i in range(3)], H,
                            self.workspace)

    def attn_heads(self, layer, q, k, v):
        return self._heads(layer, q, k, v)

    def attn_out(self, layer, q, k, v):
        return self._heads(layer, q, k, v, summed=True)

    def attn_write(self, layer, q, k, v, out):
        return self._heads(layer, q, k, v, out=out)

    # ACDC's fast engine re-runs a few heads at a time, often for the last query only
    fast_head_subset = True
    head_subset_last_query = True

    def attn_heads_subset(self, layer, heads, q, k, v):
        """The heads ``heads`` only: inputs and output ``[n, batch, pos, d]``; ``q`` may hold
        only the last position (``[n, batch, 1, d]``)."""
        return self._heads(layer, q, k, v, torch.tensor(heads, device=q.device))

    def attn_bias(self, layer):
        return self.tf.h[layer].attn.c_proj.bias

    def mlp(self, layer, x):
        block = self.tf.h[layer]
        return block.mlp(block.ln_2(x))

    def mlp_out_proj(self, layer):
        """``mlp.c_proj`` (a Conv1D ``[d_mlp, d_model]``): its input is the GELU output."""
        return self.tf.h[layer].mlp.c_proj

    def mlp_module(self, layer):
        """``mlp``: its input is ``ln_2`` of the residual stream."""
        return self.tf.h[layer].mlp

    def token_embed(self, input_ids):
        """``wte`` alone (the position embeddings left out)."""
        return self.tf.wte(input_ids)

    def unembed(self, x):
        return self.model.lm_head(self.tf.ln_f(x))

    def unembed_columns(self, x, columns):
        """``unembed(x)[..., columns]`` without the other logits: [..., len(columns)] (a
        metric that reads a few logits, e.g. the logit difference, in ACDC's engine)."""
        return self.tf.ln_f(x) @ self.model.lm_head.weight.index_select(0, columns).T

    def unembed_into(self, x, out):
        """``unembed(x)`` for ``x`` [n, d] written into ``out`` [n, vocab] (a buffer ACDC's
        engine reuses: a fresh 50k-wide logits tensor per evaluation costs page faults)."""
        return torch.mm(self.tf.ln_f(x), self.model.lm_head.weight.T, out=out)

    def unembed_linear(self):
        """``unembed(x) == F.linear(ln_f(x), weight)``: (final norm, weight, bias None)."""
        return self.tf.ln_f, self.model.lm_head.weight, None


def _is_gpt2(model) -> bool:
    return getattr(getattr(model, "config", None), "model_type", None) == "gpt2" and hasattr(
        model, "transformer"
    )


FAMILY = ModelFamily(
    name="gpt2",
    matches=_is_gpt2,
    adapter=GPT2Adapter,
    description="Hugging Face GPT2LMHeadModel (GPT-2, DistilGPT-2, GPT-2-architecture models)",
)
