"""Rows for the metric-API tests that read several positions (a helper module with a unique
name: importing ``conftest`` by name picks whichever test directory's conftest came first)."""

from __future__ import annotations

import random

from acdc_engine.testing.builders import WORDS


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
