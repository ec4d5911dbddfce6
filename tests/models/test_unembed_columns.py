"""``unembed_columns(x, columns)`` equals the full unembedding's columns on every built-in
family (ACDC's engine uses it for metrics that read a few logits)."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.api import load_model
from acdc_engine.testing.builders import save_hf
from acdc_engine.testing.numerics import assert_close_to_f64, float64

FAMILIES = ["gpt2", "llama", "gpt_neox", "gemma2", "opt", "phi3"]


@pytest.mark.parametrize("model_type", FAMILIES)
def test_unembed_columns_equals_the_full_unembedding(model_type, tmp_path):
    save_hf(tmp_path, model_type)
    model = load_model(str(tmp_path), device="cpu")
    adapter = model.adapter
    x = torch.randn(3, 2, adapter.d_model)
    cols = torch.tensor([5, 0, 17, 5])
    with torch.no_grad():
        full = adapter.unembed(x)
        got = adapter.unembed_columns(x, cols)
        with float64(model):  # the full unembedding of the same x in float64
            ref = adapter.unembed(x.double())[..., cols]
    assert got.shape == (3, 2, 4)
    # bound: 4x the full unembedding's float32 error against float64 + 16 eps max|logit|
    assert_close_to_f64(got, full[..., cols], ref, factor=4, ulps=16, what=model_type)
