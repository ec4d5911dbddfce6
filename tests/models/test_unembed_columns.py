"""``unembed_columns(x, columns)`` equals the full unembedding's columns on every built-in
family (ACDC's engine uses it for metrics that read a few logits)."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.api import load_model
from acdc_engine.testing.builders import save_hf

FAMILIES = ["gpt2", "llama", "gpt_neox", "gemma2", "opt", "phi3"]


@pytest.mark.parametrize("model_type", FAMILIES)
def test_unembed_columns_equals_the_full_unembedding(model_type, tmp_path):
    save_hf(tmp_path, model_type)
    adapter = load_model(str(tmp_path), device="cpu").adapter
    x = torch.randn(3, 2, adapter.d_model)
    cols = torch.tensor([5, 0, 17, 5])
    with torch.no_grad():
        full = adapter.unembed(x)
        got = adapter.unembed_columns(x, cols)
    assert got.shape == (3, 2, 4)
    torch.testing.assert_close(got, full[..., cols], rtol=1e-5, atol=1e-5)
