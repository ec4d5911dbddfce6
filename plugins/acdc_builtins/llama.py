"""Llama family adapter: Llama, Mistral, Qwen2 and Qwen3 run head by head with their own weights.

These models use RMSNorm, rotary position embeddings (applied by the model's own
``rotary_emb`` module and ``apply_rotary_pos_emb``), grouped-query attention and a gated MLP.
Projections are ``nn.Linear`` (``y = x W^T + b``): ``q_proj.weight`` is ``[H * d_head, d_model]``,
``k_proj``/``v_proj`` are ``[KV * d_head, d_model]`` with query head ``h`` using key/value head
``h // (H / KV)``, and ``o_proj.weight`` is ``[d_model, H * d_head]``.

Under grouped-query attention each *query* head is a node with its own q, k and v inputs; a
key/value head's weights are applied to each of its query heads' inputs separately, which is the
model's own computation whenever those inputs agree (the unpatched run).
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from acdc_engine.errors import UnsupportedModelError
from acdc_engine.models import ModelAdapter, ModelFamily

MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


class LlamaAdapter(ModelAdapter):
    def __init__(self, model):
        super().__init__(model)
        cfg = model.config
        self.base = model.model
        self.n_layers = cfg.num_hidden_layers
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.group = self.n_heads // self.n_kv
        self.d_model = cfg.hidden_size
        self.d_head = getattr(cfg, "head_dim", None) or self.d_model // self.n_heads
        attn = self.base.layers[0].self_attn
        self._rope = sys.modules[type(attn).__module__].apply_rotary_pos_emb
        self.window = getattr(cfg, "sliding_window", None) if getattr(
            cfg, "use_sliding_window", True) else None
        self._cos_sin = None

    def prepare(self, input_ids):
        """Rotary tables for this prompt length, shared by every layer of the run."""
        if self.window is not None and input_ids.shape[1] > self.window:
            raise UnsupportedModelError(
                f"prompts of {input_ids.shape[1]} tokens exceed the sliding window "
                f"({self.window}); the Llama-family adapter runs full causal attention only"
            )
        p = input_ids.shape[1]
        if self._cos_sin is None or self._cos_sin[0].shape[-2] != p or \
                self._cos_sin[0].device != input_ids.device:
            probe = self.base.embed_tokens.weight[:1][None]  # [1, 1, d]: dtype and device
            pos = torch.arange(p, device=input_ids.device)[None]
            self._cos_sin = self.base.rotary_emb(probe, pos)

    def embed(self, input_ids):
        return self.base.embed_tokens(input_ids)  # [b, p, d]

    def _proj(self, lin, x, n_out):
        """``x`` [b,p,d] or [H,b,p,d] through ``lin`` -> [b, H, p, d_head] (query heads)."""
        w = lin.weight.view(n_out, self.d_head, self.d_model)
        b = None if lin.bias is None else lin.bias.view(n_out, 1, self.d_head)
        if x.dim() == 3:  # shared input: project once per (kv) head, then share across the group
            y = torch.einsum("bpd,hkd->bhpk", x, w)
            if b is not None:
                y = y + b
            return y.repeat_interleave(self.n_heads // n_out, dim=1)
        if n_out != self.n_heads:
            w = w.repeat_interleave(self.group, dim=0)
            b = None if b is None else b.repeat_interleave(self.group, dim=0)
        y = torch.einsum("hbpd,hkd->bhpk", x, w)
        return y if b is None else y + b

    def attn_heads(self, layer, q, k, v):
        blk = self.base.layers[layer]
        attn, norm = blk.self_attn, blk.input_layernorm
        qh = self._proj(attn.q_proj, norm(q), self.n_heads)
        kh = self._proj(attn.k_proj, norm(k), self.n_kv)
        vh = self._proj(attn.v_proj, norm(v), self.n_kv)
        if hasattr(attn, "q_norm"):  # Qwen3: RMSNorm over each head's query and key
            qh, kh = attn.q_norm(qh), attn.k_norm(kh)
        cos, sin = self._cos_sin
        qh, kh = self._rope(qh, kh, cos, sin)
        z = F.scaled_dot_product_attention(qh, kh, vh, is_causal=True, scale=attn.scaling)
        w_o = attn.o_proj.weight.view(self.d_model, self.n_heads, self.d_head)
        return torch.einsum("bhpk,dhk->hbpd", z, w_o)  # [H, b, p, d]

    def attn_bias(self, layer):
        return self.base.layers[layer].self_attn.o_proj.bias

    def mlp(self, layer, x):
        blk = self.base.layers[layer]
        return blk.mlp(blk.post_attention_layernorm(x))

    def unembed(self, x):
        return self.model.lm_head(self.base.norm(x))


def _is_llama_like(model) -> bool:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "model_type", None) in MODEL_TYPES and hasattr(model, "model")


FAMILY = ModelFamily(
    name="llama",
    matches=_is_llama_like,
    adapter=LlamaAdapter,
    description="Llama, Mistral, Qwen2, Qwen3 (RMSNorm, rotary, grouped-query attention)",
)
