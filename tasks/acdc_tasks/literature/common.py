"""What every literature task shares: single-token checks, survival notes, the floor refusal.

A generator keeps only the words that are **one token where they are used**: a word that
follows a space is tested with that space (``tokenizer(" Mary")``, not ``"Mary"``), because a
byte-level BPE (GPT-2) or a SentencePiece-style tokenizer (``▁Mary``) has different tokens for
the two. Tokenization is always without special tokens, as :func:`acdc_engine.tasks.prepare`
does, so the token indices a task reports are indices into the ids the engine runs.

With ``tokenizer=None`` nothing is filtered: the full word lists are used (listing, docs).
"""

from __future__ import annotations

import random
from typing import Callable, Sequence

from acdc_engine.errors import TaskDataError
from acdc_engine.tasks import TaskRows

__all__ = ["TaskRows", "encode", "try_encode", "describe", "single_tokens", "survival", "refuse",
           "require_words", "task_rows", "draw", "ids", "mismatch", "position"]

MIN_WORDS = 4
MIN_EXAMPLES = 8


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens (as the engine tokenizes prompts)."""
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def try_encode(tokenizer, text: str) -> list[int] | None:
    """:func:`encode`, or None when the tokenizer cannot encode ``text`` at all (a word-level
    vocabulary without an unknown token raises on an unknown word)."""
    try:
        return encode(tokenizer, text)
    except Exception:  # noqa: BLE001 - tokenizers raise a bare Exception
        return None


def describe(tokenizer) -> str:
    """A short name for a tokenizer in messages: its path or class, and its size."""
    if tokenizer is None:
        return "words (no tokenizer)"
    name = str(getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__)
    return f"{name.rstrip('/').rsplit('/', 1)[-1]} ({len(tokenizer)} tokens)"


def _pieces(tokenizer, text: str) -> str:
    ids = try_encode(tokenizer, text)
    if ids is None:
        return "an error (unknown to the tokenizer)"
    return " ".join(repr(t) for t in tokenizer.convert_ids_to_tokens(ids)) or "nothing"


def single_tokens(tokenizer, words: Sequence[str], prefix: str = " ",
                  suffix: str = "") -> tuple[list[str], list[str]]:
    """``(kept, failed)``: the words ``w`` for which ``prefix + w + suffix`` is one token.

    With ``tokenizer=None`` every word is kept."""
    if tokenizer is None:
        return list(words), []
    unk = _unk(tokenizer)
    kept, failed = [], []
    for w in words:
        ids = try_encode(tokenizer, prefix + w + suffix)
        (kept if ids is not None and len(ids) == 1 and ids[0] != unk else failed).append(w)
    return kept, failed


def _unk(tokenizer) -> int | None:
    """The id unknown words map to, when it is not also a real token (GPT-2's unk is its
    ``<|endoftext|>``, which no word maps to)."""
    unk = getattr(tokenizer, "unk_token_id", None)
    real = {getattr(tokenizer, f"{t}_token_id", None) for t in ("bos", "eos", "pad")}
    return None if unk in real else unk


def survival(kept: int, total: int, what: str = "single-token") -> str:
    """``"23 of 100 single-token"``: the form every task's notes use."""
    return f"{kept} of {total} {what}"


def refuse(task: str, tokenizer, reasons: list[str]) -> TaskDataError:
    """The error a generator raises when too little survives (each reason names the words)."""
    return TaskDataError(f"of task {task!r} for tokenizer {describe(tokenizer)}", reasons)


def require_words(task: str, tokenizer, what: str, kept: list[str], failed: list[str],
                  floor: int = MIN_WORDS, prefix: str = " ", hint: str = "") -> None:
    """Raise the refusal when fewer than ``floor`` of the ``what`` words are single tokens;
    the reason shows a few failed words and how the tokenizer split them."""
    if len(kept) >= floor:
        return
    shown = ", ".join(f"{prefix + w!r} -> {_pieces(tokenizer, prefix + w)}" for w in failed[:4])
    raise refuse(task, tokenizer, [
        f"only {len(kept)} of {len(kept) + len(failed)} {what} are single tokens "
        f"(at least {floor} needed); e.g. {shown}{hint}"])


def task_rows(task: str, tokenizer, rows: list[dict], notes: dict, *, wanted: int,
              floor: int = MIN_EXAMPLES, dropped: dict[str, int] | None = None) -> TaskRows:
    """The rows as :class:`TaskRows`, with ``notes["examples"]`` (``"k of n"``), after the
    floor check: fewer than ``floor`` distinct examples (distinct clean prompts and answers)
    is a refusal naming why examples were dropped (``dropped``: reason -> count)."""
    distinct = len({(r["clean"], str(r.get("answer"))) for r in rows})
    notes = {**notes, "examples": survival(len(rows), wanted, "kept")}
    if dropped:
        notes["dropped"] = ", ".join(f"{k}: {v}" for k, v in dropped.items() if v)
    need = min(floor, wanted)
    if distinct < need:
        why = f" (dropped: {notes['dropped']})" if notes.get("dropped") else ""
        raise refuse(task, tokenizer, [
            f"only {distinct} distinct examples survive tokenization (at least {need} "
            f"needed){why}; survival: {notes}"])
    return TaskRows(rows, notes=notes)


def draw(n: int, seed: int, make: Callable[[random.Random], dict | str | None],
         tries_per_row: int = 20) -> tuple[list[dict], dict[str, int]]:
    """Up to ``n`` rows from ``make(rng)``, deterministic for ``seed``.

    ``make`` returns a row, or a string saying why this draw was dropped (e.g. ``"clean and
    corrupted differ in length"``); drops are counted, and drawing stops after
    ``tries_per_row * n`` attempts."""
    rng = random.Random(seed)
    rows: list[dict] = []
    dropped: dict[str, int] = {}
    for _ in range(max(1, tries_per_row * n)):
        if len(rows) >= n:
            break
        row = make(rng)
        if isinstance(row, str):
            dropped[row] = dropped.get(row, 0) + 1
        elif row is not None:
            rows.append(row)
    return rows, dropped


def ids(tokenizer, text: str) -> list:
    """Token ids of ``text``; with ``tokenizer=None`` its whitespace-separated words."""
    return text.split() if tokenizer is None else encode(tokenizer, text)


def mismatch(tokenizer, clean: str, corrupted: str) -> str | None:
    """Why the pair cannot be used (a word the tokenizer does not know, or the prompts differ
    in length), or None when the two align token for token (words without a tokenizer)."""
    try:
        c, k = ids(tokenizer, clean), ids(tokenizer, corrupted)
    except Exception:  # noqa: BLE001 - a vocabulary without an unknown token raises
        return "a prompt word is unknown to the tokenizer"
    unk = None if tokenizer is None else _unk(tokenizer)
    if unk is not None and (unk in c or unk in k):
        return "a prompt word is unknown to the tokenizer"
    return None if len(c) == len(k) else "clean and corrupted differ in length"


def position(tokenizer, text: str, start: int, full: list | None = None) -> int | None:
    """The token index of the word starting at character ``start`` of ``text`` (its leading
    space, if any, is at ``start - 1``): the number of tokens of the text before it. None when
    that is not where the full text's tokens put it (the prefix tokenizes differently)."""
    cut = start - 1 if start > 0 and text[start - 1] == " " else start
    before = ids(tokenizer, text[:cut])
    full = ids(tokenizer, text) if full is None else full
    return len(before) if full[: len(before)] == before and len(full) > len(before) else None
