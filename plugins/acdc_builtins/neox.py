"""GPT-NeoX family adapter (Pythia, GPT-NeoX-20B): parallel attention and MLP, partial rotary.

``attention.query_key_value`` is one ``nn.Linear(d, 3 d)`` whose output is viewed as
``[head, 3, d_head]``: head ``h`` owns rows ``h * 3 d_head ...`` holding its query, key and value
weights side by side. ``attention.dense`` is the output projection (its bias is the layer's
constant). Rotary embeddings cover the first ``partial_rotary_factor * d_head`` dimensions of each
head (the model's own ``apply_rotary_pos_emb`` leaves the rest alone).

With ``use_parallel_residual`` (every Pythia) the MLP reads the same residual stream as the
attention heads, so the graph is parallel: no edge from a layer's heads to its own MLP. Without
it the block is sequential like GPT-2's; the adapter sets ``parallel`` from the config.
"""

from __future__ import annotations

from acdc_engine.models import ModelFamily

from .decoder import DecoderAdapter


class NeoXAdapter(DecoderAdapter):
    def __init__(self, model):
        super().__init__(model)
        cfg = model.config
        self.base = model.gpt_neox
        self.layers = self.base.layers
        self.n_layers, self.n_heads = cfg.num_hidden_layers, cfg.num_attention_heads
        self.n_kv = self.n_heads
        self.d_model = cfg.hidden_size
        self.d_head = self.d_model // self.n_heads
        self.parallel = bool(cfg.use_parallel_residual)  # read by ``graph``
        self._setup()

    def _attn(self, blk):
        return blk.attention

    def _qkv(self, attn):
        lin, H, dh = attn.query_key_value, self.n_heads, self.d_head
        w = lin.weight.view(H, 3, dh, self.d_model)
        b = None if lin.bias is None else lin.bias.view(H, 3, dh)
        return tuple((w[:, i], None if b is None else b[:, i]) for i in range(3))

    def _out(self, attn):
        lin = attn.dense
        return lin.weight.view(self.d_model, self.n_heads, self.d_head), lin.bias

    def mlp_out_proj(self, layer):
        """``mlp.dense_4h_to_h``: its input is the GELU output."""
        return self.layers[layer].mlp.dense_4h_to_h

    def embed(self, input_ids):
        return self.base.embed_in(input_ids)  # [b, p, d]

    def _final_norm(self):
        return self.base.final_layer_norm


def _is_neox(model) -> bool:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "model_type", None) == "gpt_neox" and hasattr(model, "gpt_neox")


FAMILY = ModelFamily(
    name="gpt_neox",
    matches=_is_neox,
    adapter=NeoXAdapter,
    description="GPT-NeoX, Pythia (parallel attention + MLP, partial rotary, LayerNorm)",
)
