"""Llama family adapter: Llama, Mistral, Qwen2 and Qwen3 run head by head with their own weights.

These models use RMSNorm, rotary position embeddings (applied by the model's own
``rotary_emb`` module and ``apply_rotary_pos_emb``), grouped-query attention and a gated MLP.
Projections are ``nn.Linear`` (``y = x W^T + b``): ``q_proj.weight`` is ``[H * d_head, d_model]``,
``k_proj``/``v_proj`` are ``[KV * d_head, d_model]`` with query head ``h`` using key/value head
``h // (H / KV)``, and ``o_proj.weight`` is ``[d_model, H * d_head]``.

Sliding-window attention (Mistral; Qwen2/3 layers of type ``sliding_attention``) is a mask:
prompts of any length run, each query seeing the last ``window`` keys, as the model does.
The computation itself is :class:`~.decoder.DecoderAdapter`'s (shared with the other
rotary families).
"""

from __future__ import annotations

from acdc_engine.models import ModelFamily

from .decoder import DecoderAdapter

MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")


class LlamaAdapter(DecoderAdapter):
    def __init__(self, model):
        super().__init__(model)
        # a multimodal wrapper (Gemma 3 4B+) holds the text decoder and its config inside
        cfg = self.config = model.config.get_text_config()
        self.base = getattr(model.model, "language_model", model.model)
        self.layers = self.base.layers
        self.n_layers = cfg.num_hidden_layers
        self.n_heads = cfg.num_attention_heads
        self.n_kv = getattr(cfg, "num_key_value_heads", None) or self.n_heads
        self.group = self.n_heads // self.n_kv
        self.d_model = cfg.hidden_size
        self.d_head = getattr(cfg, "head_dim", None) or self.d_model // self.n_heads
        self._setup()


def _is_llama_like(model) -> bool:
    cfg = getattr(model, "config", None)
    return getattr(cfg, "model_type", None) in MODEL_TYPES and hasattr(model, "model")


FAMILY = ModelFamily(
    name="llama",
    matches=_is_llama_like,
    adapter=LlamaAdapter,
    description="Llama, Mistral, Qwen2, Qwen3 (RMSNorm, rotary, grouped-query attention, "
    "sliding windows)",
)
