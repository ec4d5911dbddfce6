"""Counterfactual pairs from plain prompts (``acdc pairs make``; docs/pairs.md).

    from acdc_engine.pairs import make_pairs
    result = make_pairs(["When Mary and John went to the store, John gave a drink to"],
                        model="gpt2-ioi-bpe", strategy="entity-swap")
    result.kept          # rows of the pairs format: clean, corrupted, answer, wrong_answer
    result.rejected      # rows with their reason and detail
    print(result.report())

    prompts      reading a prompts file (one a line, an optional answer after a tab)
    words        the names, places and objects the swaps know
    strategies   entity-swap, token-swap, role-swap, number-change, random-token
    verify       the model's checks: answer, token length, margin, wrong answer
    make         make_pairs, make_pairs_file, the survival report
"""

from __future__ import annotations

from .make import DEFAULT_MARGIN, PairsResult, make_pairs, make_pairs_file, rejected_path
from .prompts import PairsError, Prompt, read_prompts
from .strategies import STRATEGIES
from .words import ENTITIES

__all__ = ["DEFAULT_MARGIN", "ENTITIES", "PairsError", "PairsResult", "Prompt", "STRATEGIES",
           "make_pairs", "make_pairs_file", "read_prompts", "rejected_path"]
