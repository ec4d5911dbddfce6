"""Fixtures of the metric API tests: per-position rows on the word-level test vocabulary."""

from __future__ import annotations

import random

import pytest
import torch

from acdc_engine.testing.builders import WORDS, save_gpt2


def per_position_rows(n: int, length: int = 5, seed: int = 0, positions="all") -> list[dict]:
    """Rows reading ``positions`` with one answer and one wrong answer per read position."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        clean = [rng.choice(WORDS) for _ in range(length)]
        corrupted = [rng.choice(WORDS) for _ in range(length)]
        k = length if positions == "all" else len(positions)
        rows.append({"clean": " ".join(clean), "corrupted": " ".join(corrupted),
                     "positions": positions,
                     "answer": [rng.choice(WORDS) for _ in range(k)],
                     "wrong_answer": [rng.choice(WORDS) for _ in range(k)]})
    return rows


@pytest.fixture(scope="module")
def model64(tmp_path_factory):
    """2 layers x 2 heads in float64: fast and naive ACDC cannot differ by a rounding tie."""
    from acdc_engine import load_model

    path = save_gpt2(tmp_path_factory.mktemp("gpt2-metrics64"), seed=2)
    return load_model(str(path), device="cpu", dtype=torch.float64)
