"""Shared fixtures: tiny random-weight models saved to disk and loaded by path, like a user's.

No weights are downloaded: every model is built from a config (random weights), saved with
``save_pretrained`` and loaded back through the real loading code (transformers + nnsight).
"""

from __future__ import annotations

import os
import pytest
import torch

os.environ.setdefault("ACDC_PROGRESS", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

torch.set_num_threads(1)  # tiny models: one thread is fastest and shares 2 cores well

from acdc_engine.testing.builders import (  # noqa: E402,F401  (fixtures and tests use them)
    WORDS,
    TinyShape,
    perturb,
    random_pairs,
    save_gpt2,
    save_hf,
    save_llama,
    save_tokenizer,
    save_tracr,
    word_tokenizer,
)

@pytest.fixture(scope="session", autouse=True)
def _isolated_results(tmp_path_factory):
    """Tests never write to the repository's results/ or its MLflow store."""
    root = tmp_path_factory.mktemp("results")
    mp = pytest.MonkeyPatch()
    mp.setenv("ACDC_RESULTS", str(root))
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db")
    yield root
    mp.undo()


@pytest.fixture(scope="session")
def gpt2_path(tmp_path_factory):
    return save_gpt2(tmp_path_factory.mktemp("gpt2-tiny"))


@pytest.fixture(scope="session")
def gpt2(gpt2_path):
    from acdc_engine import load_model

    return load_model(str(gpt2_path), device="cpu")


@pytest.fixture(scope="session")
def gpt2_3layer(tmp_path_factory):
    from acdc_engine import load_model

    path = save_gpt2(tmp_path_factory.mktemp("gpt2-3l"), n_layer=3, n_head=3, n_embd=24, seed=1)
    return load_model(str(path), device="cpu")


@pytest.fixture(scope="session")
def llama(tmp_path_factory):
    from acdc_engine import load_model

    return load_model(str(save_llama(tmp_path_factory.mktemp("llama"))), device="cpu")


@pytest.fixture(scope="session")
def qwen2(tmp_path_factory):
    from acdc_engine import load_model

    path = save_llama(tmp_path_factory.mktemp("qwen2"), model_type="qwen2", seed=1)
    return load_model(str(path), device="cpu")


@pytest.fixture(scope="session")
def neox(tmp_path_factory):
    """A tiny random GPT-NeoX with parallel attention and MLP (Pythia's layout)."""
    from acdc_engine import load_model

    path = save_hf(tmp_path_factory.mktemp("neox-parallel"), "gpt_neox",
                   shape=TinyShape(n_layer=3))
    model = load_model(str(path), device="cpu")
    assert model.graph.parallel
    return model


@pytest.fixture(scope="session")
def tracr(tmp_path_factory):
    from acdc_engine import load_model

    return load_model(str(save_tracr(tmp_path_factory.mktemp("tracr"))), device="cpu")


@pytest.fixture(params=["gpt2", "llama", "qwen2", "tracr"])
def family_model(request):
    """One tiny model per supported family: the invariants run on each."""
    return request.getfixturevalue(request.param)
