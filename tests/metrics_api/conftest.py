"""Fixtures of the metric API tests: per-position rows on the word-level test vocabulary."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.testing.builders import save_gpt2


@pytest.fixture(scope="module")
def model64(tmp_path_factory):
    """2 layers x 2 heads in float64: fast and naive ACDC cannot differ by a rounding tie."""
    from acdc_engine import load_model

    path = save_gpt2(tmp_path_factory.mktemp("gpt2-metrics64"), seed=2)
    return load_model(str(path), device="cpu", dtype=torch.float64)
