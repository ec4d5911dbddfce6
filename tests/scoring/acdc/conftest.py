"""Fixtures of the ACDC speed tests: small GPT-2s whose heads write into a subspace small enough
(d_head <= d_model / 4) for the engine's low-rank unembedding."""

from __future__ import annotations

import pytest
import torch

from acdc_engine import load_model
from acdc_engine.testing import save_gpt2


@pytest.fixture(scope="module")
def narrow_heads(tmp_path_factory):
    """3 layers x 4 heads of d_head 8 in d_model 32, float64 (no rounding ties with naive)."""
    path = save_gpt2(tmp_path_factory.mktemp("gpt2-lowrank"), n_layer=3, n_head=4, n_embd=32,
                     seed=5)
    return load_model(str(path), device="cpu", dtype=torch.float64)


@pytest.fixture(scope="module")
def narrow_heads32(tmp_path_factory):
    """The same shape in float32."""
    path = save_gpt2(tmp_path_factory.mktemp("gpt2-lowrank32"), n_layer=3, n_head=4, n_embd=32,
                     seed=6)
    return load_model(str(path), device="cpu", dtype=torch.float32)
