"""Phi-3 family adapter: a Llama-style block with fused projections.

``self_attn.qkv_proj`` is one ``nn.Linear`` whose output holds all query heads, then the
key/value heads' keys, then their values (``[H + 2 KV] * d_head`` rows); ``mlp.gate_up_proj``
fuses the gated MLP's two input projections (the model's own MLP module runs it). Rotary
embeddings may cover part of each head (``partial_rotary_factor``; the model's own
``apply_rotary_pos_emb``), and a ``sliding_window`` in the config is a mask, as for Mistral.
"""

from __future__ import annotations

from acdc_engine.models import ModelFamily

from .llama import LlamaAdapter


class Phi3Adapter(LlamaAdapter):
    def _qkv(self, attn):
        w, dh, d = attn.qkv_proj.weight, self.d_head, self.d_model
        H, KV = self.n_heads, self.n_kv
        q, k, v = w.split([H * dh, KV * dh, KV * dh], dim=0)
        b = attn.qkv_proj.bias
        bq, bk, bv = (None,) * 3 if b is None else b.split([H * dh, KV * dh, KV * dh])
        return ((q.view(H, dh, d), None if bq is None else bq.view(H, dh)),
                (k.view(KV, dh, d), None if bk is None else bk.view(KV, dh)),
                (v.view(KV, dh, d), None if bv is None else bv.view(KV, dh)))


def _is_phi3(model) -> bool:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "model_type", None) == "phi3" and hasattr(model, "model")


FAMILY = ModelFamily(
    name="phi3",
    matches=_is_phi3,
    adapter=Phi3Adapter,
    description="Phi-3 (fused qkv and gate/up projections, partial rotary, RMSNorm, GQA)",
)
