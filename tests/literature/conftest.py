"""Tokenizers trained offline on the tasks' own corpus, and random models saved with them.

``byte-bpe`` (GPT-2/Pythia style) and ``sentencepiece`` (Metaspace + BPE, Llama/Gemma style) are
large enough that every task word is one token; ``byte-bpe-small`` (900 tokens) keeps only some
(the survival notes) and refuses gender-bias; ``byte-bpe-tiny`` (300) refuses every word task;
``unigram`` (Metaspace + Unigram, T5 style: ~800 pieces) keeps most names and parameter names.
"""

from __future__ import annotations

import pytest

from acdc_engine.testing.builders import TinyShape, save_hf, save_tokenizer

SIZES = {"byte-bpe": ("byte-bpe", 1800), "sentencepiece": ("sentencepiece", 2400),
         "byte-bpe-small": ("byte-bpe", 900), "byte-bpe-tiny": ("byte-bpe", 300),
         "unigram": ("unigram", 2400)}


@pytest.fixture(scope="session")
def lit_corpus():
    from acdc_tasks.literature.corpus import corpus

    return corpus(100)


@pytest.fixture(scope="session")
def lit_tokenizers(lit_corpus):
    """name -> a trained ``PreTrainedTokenizerFast``."""
    from acdc_tasks.literature.corpus import train_tokenizer

    return {name: train_tokenizer(kind, size, lines=lit_corpus)
            for name, (kind, size) in SIZES.items()}


def _model(root, model_type, tok, **cfg):
    from acdc_engine import load_model

    path = save_hf(root, model_type, tokenizer=False, vocab_size=len(tok),
                   shape=TinyShape(n_layer=2, n_head=2, n_kv=1, d=16), **cfg)
    save_tokenizer(tok, path)
    return load_model(str(path), device="cpu")


@pytest.fixture(scope="session")
def lit_models(tmp_path_factory, lit_tokenizers):
    """(architecture, tokenizer) -> a loaded 2-layer random model saved with that tokenizer."""
    out = {}
    for arch, tok_name, cfg in (("gpt2", "byte-bpe", {"n_positions": 128}),
                                ("llama", "sentencepiece", {"max_position_embeddings": 128}),
                                ("llama", "byte-bpe", {"max_position_embeddings": 128})):
        root = tmp_path_factory.mktemp(f"{arch}-{tok_name}")
        out[arch, tok_name] = _model(root, arch, lit_tokenizers[tok_name], **cfg)
    return out
