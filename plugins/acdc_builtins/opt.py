"""OPT family adapter: learned positions, LayerNorm, ReLU MLP, biases everywhere.

Positions are learned with an offset of 2 (``embed_positions.weight[pos + 2]``); models whose
word embeddings are narrower than the residual stream (OPT-350m) project them in
(``project_in``) and out (``project_out``, before the LM head). Queries are scaled by
``d_head ** -0.5`` after their bias, which is the same as scaling the scores.

Post-norm OPT (``do_layer_norm_before=False``, OPT-350m) normalizes the residual stream itself
after every block, so it is no longer a sum of component outputs: refused with that reason.
"""

from __future__ import annotations

import torch

from acdc_engine.errors import UnsupportedModelError
from acdc_engine.models import ModelFamily

from .decoder import DecoderAdapter


class OPTAdapter(DecoderAdapter):
    def __init__(self, model):
        super().__init__(model)
        cfg = model.config
        if not cfg.do_layer_norm_before:
            raise UnsupportedModelError(
                "OPT with do_layer_norm_before=False (post-norm, e.g. OPT-350m) normalizes the "
                "residual stream after every block, so it is not a sum of component outputs and "
                "edges into later components are not defined; only pre-norm OPT is supported"
            )
        self.base = model.model.decoder
        self.layers = self.base.layers
        self.n_layers, self.n_heads = cfg.num_hidden_layers, cfg.num_attention_heads
        self.n_kv = self.n_heads
        self.d_model = cfg.hidden_size
        self.d_head = self.d_model // self.n_heads
        self._setup()

    def _rotary(self, probe, pos):
        return None  # learned absolute positions (in ``embed``)

    def _attn_norm(self, blk):
        return blk.self_attn_layer_norm

    def _out(self, attn):
        lin = attn.out_proj
        return lin.weight.view(self.d_model, self.n_heads, self.d_head), lin.bias

    def _mlp_norm(self, blk):
        return blk.final_layer_norm

    def mlp(self, layer, x):
        blk = self.layers[layer]
        return blk.fc2(blk.activation_fn(blk.fc1(blk.final_layer_norm(x))))

    def mlp_out_proj(self, layer):
        """``fc2``: its input is the ReLU output."""
        return self.layers[layer].fc2

    def mlp_module(self, layer):
        """``fc1``: its input is ``final_layer_norm`` of the residual stream."""
        return self.layers[layer].fc1

    def token_embed(self, input_ids):
        """The token embeddings (projected in), without the learned positions."""
        dec = self.base
        x = dec.embed_tokens(input_ids)
        return x if dec.project_in is None else dec.project_in(x)

    def embed(self, input_ids):
        dec = self.base
        x = dec.embed_tokens(input_ids)
        if dec.project_in is not None:
            x = dec.project_in(x)
        pos = torch.arange(input_ids.shape[1], device=input_ids.device)
        return x + dec.embed_positions.weight[pos + dec.embed_positions.offset]  # [b, p, d]

    def unembed(self, x):
        dec = self.base
        if dec.final_layer_norm is not None:
            x = dec.final_layer_norm(x)
        if dec.project_out is not None:
            x = dec.project_out(x)
        return self.model.lm_head(x)


def _is_opt(model) -> bool:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "model_type", None) == "opt" and hasattr(model, "model")


FAMILY = ModelFamily(
    name="opt",
    matches=_is_opt,
    adapter=OPTAdapter,
    description="OPT, pre-norm (learned positions, LayerNorm, ReLU MLP; post-norm refused)",
)
