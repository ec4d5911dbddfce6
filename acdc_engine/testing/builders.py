"""Micro models for tests, yours and ours: tiny random-weight models saved like a user's.

No weights are downloaded: every model is built from a config (random weights), perturbed so
that a wrong adapter cannot agree with it by accident, saved with ``save_pretrained`` and loaded
back by path through the real loading code (transformers + nnsight)::

    from acdc_engine.testing import save_gpt2, random_pairs
    path = save_gpt2(tmp_path / "gpt2")              # 2 layers, 2 heads, d_model 16
    model = acdc_engine.load_model(str(path), device="cpu")

Any architecture transformers knows: ``save_hf(path, "gpt_neox")``, ``save_hf(path, "gemma2",
sliding_window=3)``, ``save_hf(path, "llama", shape=TinyShape(n_layer=3))`` (the real config
class, a small shape, your overrides on top).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

__all__ = ["WORDS", "word_tokenizer", "save_tokenizer", "perturb", "save_gpt2", "save_llama",
           "save_hf", "TinyShape", "hf_shape", "save_tracr", "random_pairs"]

WORDS = [f"w{i}" for i in range(40)]
"""The vocabulary of :func:`word_tokenizer`'s test models (``w0`` ... ``w39``)."""


def word_tokenizer(words=WORDS):
    """A word-level fast tokenizer over ``words`` (plus ``<unk>``), for micro models."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<unk>", "<pad>", *words])}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>")


def save_tokenizer(tok, path):
    """Save so that AutoTokenizer loads it back as is, whatever the model type says."""
    import json

    tok.save_pretrained(path)
    cfg_path = f"{path}/tokenizer_config.json"
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)


def perturb(model, norm_key: str, scale: float) -> None:
    """Random init is small, biases zero and norms identity: perturb everything so that a wrong
    adapter (a missing bias, a skipped norm weight) cannot agree with the model by accident."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if norm_key in name:
                p.add_(0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.normal_(0.0, 0.2)
            else:
                p.mul_(scale)


def save_gpt2(path, n_layer=2, n_head=2, n_embd=16, seed=0, tokenizer=True, **cfg):
    """Save a GPT-2 with random weights (seeded) of the given shape to ``path``, with a
    :func:`word_tokenizer` unless ``tokenizer`` is False; ``cfg`` overrides config fields."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    tok = word_tokenizer()
    config = GPT2Config(n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_positions=32,
                        vocab_size=len(tok), bos_token_id=0, eos_token_id=0, pad_token_id=0,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, **cfg)
    model = GPT2LMHeadModel(config)
    perturb(model, norm_key="ln", scale=8.0)
    model.save_pretrained(path)
    if tokenizer:
        save_tokenizer(tok, path)
    return path


def save_llama(path, model_type="llama", n_layer=2, n_head=4, n_kv=2, d=32, seed=0):
    """A tiny random Llama-family model (grouped-query attention, rotary, RMSNorm)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(seed)
    tok = word_tokenizer()
    config = AutoConfig.for_model(
        model_type, hidden_size=d, intermediate_size=2 * d, num_hidden_layers=n_layer,
        num_attention_heads=n_head, num_key_value_heads=n_kv, vocab_size=len(tok),
        max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=0,
        tie_word_embeddings=False,
    )
    model = AutoModelForCausalLM.from_config(config)
    perturb(model, norm_key="norm", scale=4.0)
    model.save_pretrained(path)
    save_tokenizer(tok, path)
    return path


def hf_shape(model_type: str, n_layer=2, n_head=4, n_kv=2, d=32, vocab=64, n_pos=64) -> dict:
    """Config keywords giving ``model_type`` a small shape, in that config class's own names."""
    if model_type == "gpt2":
        return dict(n_layer=n_layer, n_head=n_head, n_embd=d, n_positions=n_pos,
                    vocab_size=vocab, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    shape = dict(hidden_size=d, num_hidden_layers=n_layer, num_attention_heads=n_head,
                 vocab_size=vocab, max_position_embeddings=n_pos, tie_word_embeddings=False)
    if model_type == "opt":
        return {**shape, "ffn_dim": 2 * d, "word_embed_proj_dim": d}
    shape["intermediate_size"] = 2 * d
    if model_type == "gpt_neox":
        return shape
    shape.update(num_key_value_heads=n_kv, head_dim=d // n_head)
    if model_type.startswith("gemma"):
        shape["query_pre_attn_scalar"] = d // n_head
    if "moe" in model_type or model_type == "mixtral":
        shape.update(num_local_experts=4, num_experts=4, num_experts_per_tok=2,
                     moe_intermediate_size=d, shared_expert_intermediate_size=d)
    return shape


@dataclass(frozen=True)
class TinyShape:
    """The shape of a :func:`save_hf` model: layers, heads, key/value heads, model width."""

    n_layer: int = 2
    n_head: int = 4
    n_kv: int = 2
    d: int = 32


def save_hf(path, model_type: str, *, shape: TinyShape = TinyShape(), seed=0, scale=4.0,
            tokenizer=True, **cfg):
    """A tiny random model of any ``model_type`` transformers has a config class for, saved
    with the word-level tokenizer: :func:`hf_shape` keywords for ``shape``, then ``cfg`` on top
    (e.g. ``sliding_window=3``, ``use_parallel_residual=False``). Weights are
    :func:`perturb`-ed (norms by name: every norm module's parameters contain ``norm``)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    moved = sorted(set(cfg) & {"n_layer", "n_head", "n_kv", "d"})
    if moved:  # would otherwise land on the config as unused attributes
        raise TypeError(f"save_hf: pass {', '.join(moved)} as shape=TinyShape(...)")
    torch.manual_seed(seed)
    tok = word_tokenizer()
    dims = (shape.n_layer, shape.n_head, shape.n_kv, shape.d)
    kw = {**hf_shape(model_type, *dims, vocab=len(tok)),
          "bos_token_id": 0, "eos_token_id": 0, "pad_token_id": 0, **cfg}
    if model_type == "gemma3":  # multimodal: the shape is the text model's; a tiny vision tower
        kw = {"text_config": {**hf_shape("gemma3_text", *dims, vocab=len(tok)), **cfg},
              "vision_config": {"hidden_size": 16, "intermediate_size": 32, "image_size": 28,
                                "patch_size": 14, "num_hidden_layers": 1,
                                "num_attention_heads": 2},
              "mm_tokens_per_image": 4}
    config = AutoConfig.for_model(model_type, **kw)
    model = AutoModelForCausalLM.from_config(config)
    perturb(model, norm_key="norm" if model_type != "gpt2" else "ln", scale=scale)
    model.save_pretrained(path)
    if tokenizer:
        save_tokenizer(tok, path)
    return path


def save_tracr(path, n_layer=2, n_head=2, d=16, d_head=8, d_mlp=12, causal=False, seed=0):
    """A tiny random acdc_tracr.TracrForCausalLM (non-causal attention, no norms, ReLU MLPs)."""
    import acdc_tracr  # noqa: F401  (the plugin; loading registers model_type acdc_tracr)
    from acdc_tracr.modeling import TracrConfig, TracrForCausalLM

    torch.manual_seed(seed)
    tok = word_tokenizer()
    config = TracrConfig(vocab_size=len(tok), n_ctx=32, d_model=d, n_layers=n_layer,
                         n_heads=n_head, d_head=d_head, d_mlp=d_mlp, causal=causal,
                         output_encoding="tokens")
    model = TracrForCausalLM(config)
    with torch.no_grad():  # every weight and bias random, far from linear, not saturated
        for name, p in model.named_parameters():
            p.normal_(0.0, 0.3 if name.split(".")[-1].startswith("b_") else 0.5)
    model.save_pretrained(path)
    save_tokenizer(tok, path)
    return path


def random_pairs(n=12, length=6, seed=0):
    """``n`` task rows of random words of :data:`WORDS` (``length`` tokens), with one-token answers
    and wrong answers: a task any micro model can be scored on."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        clean = " ".join(rng.choice(WORDS) for _ in range(length))
        corrupted = " ".join(rng.choice(WORDS) for _ in range(length))
        a, b = rng.sample(WORDS, 2)
        rows.append({"clean": clean, "corrupted": corrupted, "answer": f" {a}",
                     "wrong_answer": f" {b}"})
    return rows
