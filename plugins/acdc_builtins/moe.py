"""Mixture-of-experts family adapter: Mixtral, Qwen2-MoE, Qwen3-MoE.

The attention is Llama's (grouped-query, rotary, optional sliding window). The MLP node is the
whole sparse block (``blk.mlp``: router, top-k experts, Qwen2-MoE's gated shared expert) run on
the node's input: routing happens inside the node, so a patched input is routed afresh, exactly
as the model would route it. Expert choice is piecewise constant in the input, so EAP's
gradient sees the routing weights but not a change of the chosen experts; exact patching
(ACDC) sees both. Individual experts are not nodes.
"""

from __future__ import annotations

from acdc_engine.errors import UnsupportedModelError
from acdc_engine.models import ModelFamily

from .llama import LlamaAdapter

MODEL_TYPES = ("mixtral", "qwen2_moe", "qwen3_moe")


class MoEAdapter(LlamaAdapter):
    """:class:`~.llama.LlamaAdapter`; only the MLP differs, and the model's block runs it."""

    def mlp_out_proj(self, layer):
        """Refused: each expert has its own output projection and the router picks them per
        token, so the block has no one hidden activation."""
        raise UnsupportedModelError(
            "a mixture-of-experts MLP (Mixtral, Qwen-MoE) has one output projection per expert "
            "and routes each token to some of them: it has no single hidden activation, so MLP "
            "neuron tools do not apply; ablate the whole MLP node (m<layer>) instead"
        )


def _is_moe(model) -> bool:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "model_type", None) in MODEL_TYPES and hasattr(model, "model")


FAMILY = ModelFamily(
    name="moe",
    matches=_is_moe,
    adapter=MoEAdapter,
    description="Mixtral, Qwen2-MoE, Qwen3-MoE (the MLP node is the whole routed block)",
)
