"""``greater-than``: which years can end a span (Hanna et al. 2023, "How does GPT-2 compute
greater-than?").

Template::

    The [NOUN] lasted from the year 17YY to the year 17   ->  a two-digit YY' > YY

Clean start years have YY in 02..98. The corruption is the paper's: the start year's YY is
``01``, so every continuation is "greater" and the prompt carries no threshold.

Metric: ``set_prob_diff`` (the paper's probability difference): the probability mass on
``answer_set`` (the two-digit years greater than YY) minus the mass on ``wrong_set`` (those
<= YY). For today's last-token metrics each row also has ``answer`` (the smallest year above
YY) and ``wrong_answer`` (YY itself). Extra keys: ``noun``, ``year`` (YY as a number), and
the named positions ``noun_pos``, ``yy_pos`` (the start year's YY token) and ``end_pos`` (the
last token; ``--positions named`` splits edges by them, docs/positions.md).

Survival: the century ``" 17"`` must be one token, and a YY is kept only when it is one token
right after it (``" 17" + "32"`` tokenizes as ``[" 17", "32"]``, as GPT-2's BPE does); ``01``
must survive (it is the corruption). Tokenizers that split digits one by one (Llama, Gemma)
keep no YY and are refused. Nouns are kept when one token with their leading space. Floors:
8 YYs, 4 nouns, 8 distinct examples.
"""

from __future__ import annotations

from .common import (
    describe, draw, ids, mismatch, position, refuse, require_words, single_tokens, survival,
    task_rows, try_encode,
)
from .words import GT_NOUNS

__all__ = ["TEMPLATE", "CENTURY", "YEARS", "rows", "two_digit_years"]

NAME = "greater-than"
TEMPLATE = "The {noun} lasted from the year {century}{start} to the year {century}"
CENTURY = "17"
YEARS = tuple(f"{y:02d}" for y in range(100))  # "00" .. "99": every continuation
CORRUPT_YY = "01"


def two_digit_years(tokenizer, century: str = CENTURY) -> tuple[list[str], list[str]]:
    """``(kept, failed)``: the YYs that are one token right after ``" " + century``, i.e.
    ``" 17YY"`` tokenizes as ``" 17"`` plus one token. The engine reads an answer at the last
    position in that context (``acdc_engine.tasks.rows``), so SentencePiece-style tokenizers,
    which would turn ``"32"`` alone into ``"▁32"``, keep their years too."""
    if tokenizer is None:
        return list(YEARS), []
    head = try_encode(tokenizer, " " + century)
    kept, failed = [], []
    for yy in YEARS:
        full = try_encode(tokenizer, f" {century}{yy}")
        ok = (head is not None and full is not None and len(full) == len(head) + 1
              and full[: len(head)] == head)
        (kept if ok else failed).append(yy)
    return kept, failed


def rows(n: int | None, seed: int = 0, tokenizer=None):
    """``n`` (default 64) greater-than rows for ``tokenizer`` (see the module docstring)."""
    n = 64 if n is None else n
    head = None if tokenizer is None else try_encode(tokenizer, " " + CENTURY)
    if tokenizer is not None and (head is None or len(head) != 1):
        pieces = "unknown" if head is None else tokenizer.convert_ids_to_tokens(head)
        raise refuse(NAME, tokenizer, [
            f"the century {' ' + CENTURY!r} is not one token for {describe(tokenizer)} "
            f"({pieces}); the two-digit year cannot follow it as one token"])
    years, bad_years = two_digit_years(tokenizer)
    nouns, bad_nouns = single_tokens(tokenizer, GT_NOUNS)
    require_words(NAME, tokenizer, f"two-digit years after {' ' + CENTURY!r}", years,
                  bad_years, floor=8, prefix=" " + CENTURY)
    require_words(NAME, tokenizer, "nouns (with a leading space)", nouns, bad_nouns)
    if CORRUPT_YY not in years:
        raise refuse(NAME, tokenizer, [
            f"the corruption's year {CENTURY + CORRUPT_YY!r} does not tokenize as "
            f"{' ' + CENTURY!r} + {CORRUPT_YY!r}"])
    kept = set(years)
    starts = [yy for yy in years if 2 <= int(yy) <= 98]

    def make(rng):
        yy, noun = rng.choice(starts), rng.choice(nouns)
        above = [y for y in YEARS if y > yy and y in kept]
        below = [y for y in YEARS if y <= yy and y in kept]
        if not above or not below:
            return "no single-token year on one side of the start year"
        clean = TEMPLATE.format(noun=noun, century=CENTURY, start=yy)
        corrupted = TEMPLATE.format(noun=noun, century=CENTURY, start=CORRUPT_YY)
        why = mismatch(tokenizer, clean, corrupted)
        if why:
            return why
        full = ids(tokenizer, clean)
        year = clean.index(CENTURY + yy)  # words without a tokenizer: "17YY" is one
        at = [position(tokenizer, clean, start, full) for start in (
            clean.index(noun), year if tokenizer is None else year + len(CENTURY))]
        if None in at:
            return "the noun's or the year's token index is ambiguous"
        return {"clean": clean, "corrupted": corrupted, "answer": above[0], "wrong_answer": yy,
                "answer_set": above, "wrong_set": below, "noun": noun, "year": int(yy),
                "noun_pos": at[0], "yy_pos": at[1], "end_pos": len(full) - 1}

    out, dropped = draw(n, seed, make)
    notes = {"years": survival(len(years), len(YEARS), f"single-token after ' {CENTURY}'"),
             "nouns": survival(len(nouns), len(GT_NOUNS))}
    return task_rows(NAME, tokenizer, out, notes, wanted=n, dropped=dropped)
