"""Rows with named positions for the position-aware tests (imported by module name: the
name is unique across tests/)."""

from __future__ import annotations

import random

from acdc_engine.testing.builders import random_pairs


def named_rows(n=8, length=6, seed=0):
    """Random pairs with named positions: A and B (distinct random tokens of each row, never
    the last) and END (the last token)."""
    rng = random.Random(seed)
    rows = random_pairs(n, length, seed)
    for r in rows:
        a, b = rng.sample(range(length - 1), 2)
        r.update(a_pos=a, b_pos=b, end_pos=-1)
    return rows
