"""Gemma family adapter: Gemma, Gemma 2 and Gemma 3 (text) run head by head.

All three scale the token embeddings by ``sqrt(d_model)`` (inside the model's embedding module),
use RMSNorm with weight ``1 + w``, grouped-query attention, rotary positions and a GeGLU MLP, and
scale attention scores by ``query_pre_attn_scalar ** -0.5`` (the module's ``scaling``).

Gemma 2 and 3 add:

* **post-norms**: the layer's attention output (the sum over heads) and the MLP's output pass
  through an RMSNorm before joining the residual stream. The MLP's post-norm is part of the MLP
  node. The attention post-norm is applied to the sum, so head ``h`` writes
  ``o_h * s * (1 + w)`` with ``s = rsqrt(mean(sum_h o_h ** 2) + eps)`` taken over the layer's
  heads *in this run*: the writes sum to the model's own output, but a head's write depends on
  its layer's other heads through ``s`` (a patched head changes its neighbours' writes; EAP's
  gradient and exact patching both see that). Heads are therefore not separable: ACDC's
  incremental engine, which re-runs one head alone, is refused (:meth:`attn_heads_subset`).
* **alternating sliding-window layers** (a mask, for prompts of any length);
* **soft-capping** (Gemma 2): attention scores ``c * tanh(x / c)`` before the mask
  (``attn_logit_softcapping``) and the logits likewise (``final_logit_softcapping``);
* **q/k norms** (Gemma 3) and per-layer-type rotary tables (local and global bases).

Multimodal Gemma 3 (``Gemma3ForConditionalGeneration``, the 4B and larger checkpoints) runs on
text: its language model is the decoder here; the vision tower is not part of the graph (prompts
are token ids, no images).
"""

from __future__ import annotations

import torch

from acdc_engine.errors import UnsupportedModelError
from acdc_engine.models import ModelFamily

from .llama import LlamaAdapter

MODEL_TYPES = ("gemma", "gemma2", "gemma3_text", "gemma3")


class GemmaAdapter(LlamaAdapter):
    def __init__(self, model):
        super().__init__(model)
        cfg = self.config  # the text config
        self.attn_softcap = getattr(cfg, "attn_logit_softcapping", None)
        # the multimodal Gemma 3 forward applies no final soft-cap, whatever its text config says
        multimodal = cfg is not model.config
        self.final_softcap = None if multimodal else getattr(cfg, "final_logit_softcapping", None)
        self.post_norms = hasattr(self.layers[0], "post_feedforward_layernorm")
        self.layer_types = getattr(cfg, "layer_types", None)
        self.per_type_rope = cfg.model_type == "gemma3_text"

    # ----- rotary tables: Gemma 3 has one per layer type (local and global bases) ------------
    def _rotary(self, probe, pos):
        if not self.per_type_rope:
            return super()._rotary(probe, pos)
        return {t: self.base.rotary_emb(probe, pos, t) for t in set(self.layer_types)}

    def _tables(self, layer):
        if not self.per_type_rope:
            return self._cos_sin
        return self._cos_sin[self.layer_types[layer]]

    # ----- post-norms (Gemma 2, 3) ------------------------------------------------------------
    def _post_attn(self, blk, heads, bias):
        if not self.post_norms:
            return heads
        if bias is not None:  # inside the norm: each head carries an equal share of it
            heads = heads + bias / self.n_heads
        norm = blk.post_attention_layernorm
        up = torch.promote_types(heads.dtype, torch.float32)  # as the norm: at least float32
        total = heads.sum(0).to(up)  # [b, p, d]: the layer's output before the norm
        s = torch.rsqrt(total.pow(2).mean(-1, keepdim=True) + norm.eps)  # [b, p, 1]
        if self.frozen is not None:  # a frozen run (the replacement model): a constant scale
            s = self.frozen.constant(s)
        return (heads.to(up) * s * (1.0 + norm.weight.to(up))).to(heads.dtype)

    def attn_bias(self, layer):
        if self.post_norms:
            return None  # the output bias is inside the post-norm (:meth:`_post_attn`)
        return super().attn_bias(layer)

    def _mlp_norm(self, blk):
        return blk.pre_feedforward_layernorm if self.post_norms else blk.post_attention_layernorm

    def mlp(self, layer, x):
        out = super().mlp(layer, x)
        return self.layers[layer].post_feedforward_layernorm(out) if self.post_norms else out

    def mlp_from_hidden(self, layer, h):
        """``down_proj``, then the MLP's post-norm (Gemma 2/3): part of the MLP node."""
        out = self.mlp_out_proj(layer)(h)
        return self.layers[layer].post_feedforward_layernorm(out) if self.post_norms else out

    def attn_heads_subset(self, layer, heads, q, k, v):
        if self.post_norms:
            raise UnsupportedModelError(
                "Gemma 2/3 normalize the sum of a layer's heads (post-attention RMSNorm), so one "
                "head cannot be re-run alone: ACDC's incremental engine does not apply; use eap, "
                "eap-ig or exact patching"
            )
        return super().attn_heads_subset(layer, heads, q, k, v)


def _is_gemma(model) -> bool:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "model_type", None) in MODEL_TYPES and hasattr(model, "model")


FAMILY = ModelFamily(
    name="gemma",
    matches=_is_gemma,
    adapter=GemmaAdapter,
    description="Gemma, Gemma 2, Gemma 3 text (post-norms, soft-capping, alternating sliding "
    "windows, q/k norms)",
)
