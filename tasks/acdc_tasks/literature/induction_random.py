"""``induction-random`` and ``induction-random-all``: repeated random tokens on any vocabulary.

A prompt is ``[BOS] s_0 ... s_{L-1} s_0 ... s_{k-1}``: ``L`` distinct random tokens of the
tokenizer's own vocabulary, then the start of their repetition; the answer is ``s_k``, which
only induction (find the earlier ``s_{k-1}``, copy what followed it) can predict (Olsson et al.
2022). Corruption: the first half is a second random sequence, disjoint from the first, so the
repeated tokens occur nowhere before and induction has nothing to copy; ``wrong_answer`` is
the corrupted sequence's token in the answer's slot. ``[BOS]`` is the tokenizer's BOS token
when it has one (``BOS`` on the toy vocabulary). Metric: ``logit_diff``.

``induction-random-all`` shows the whole repetition (``k = L - 1``) and reads **every**
position of it: ``positions`` are the token indices of the repeated ``s_0 ... s_{L-2}``, with
per-position answers ``s_1 ... s_{L-1}`` and wrong answers from the corrupted sequence (the
metric API's per-position rows).

Token pool: every id that is not a special token and **round-trips**: its text ``w`` (decoded,
stripped) satisfies ``tokenizer(" " + w) == [id]``, so a prompt written as words with leading
spaces re-tokenizes to exactly the drawn ids (a sub-word piece such as ``ing`` would merge with
its neighbour and is left out). Each drawn prompt is checked once more as a whole; one that
does not re-tokenize to its ids is dropped and counted. Floors: ``2 L`` tokens in the pool,
8 distinct examples. With ``tokenizer=None`` the pool is the toy vocabulary ``t0 ... t31``
(``toy-induction``'s).
"""

from __future__ import annotations

import weakref

from .common import describe, draw, encode, refuse, survival, task_rows, try_encode

__all__ = ["LENGTH", "token_pool", "rows", "rows_all"]

LENGTH = 8  # L: tokens in the random sequence
TOY_POOL = tuple(f"t{i}" for i in range(32))


def token_pool(tokenizer) -> tuple[list[str], int]:
    """``(words, n_candidates)``: the round-tripping tokens' texts (stripped), in id order."""
    if tokenizer is None:
        return list(TOY_POOL), len(TOY_POOL)
    cached = _POOL.get("of")
    if cached is None or cached() is not tokenizer:
        special = set(tokenizer.all_special_ids)
        ids = [i for i in range(len(tokenizer)) if i not in special]
        texts = [t.strip() for t in tokenizer.batch_decode([[i] for i in ids])]
        cand = [(i, w) for i, w in zip(ids, texts) if w and not any(c.isspace() for c in w)]
        enc = [try_encode(tokenizer, " " + w) for _, w in cand] if _raises(tokenizer) else \
            tokenizer([" " + w for _, w in cand], add_special_tokens=False)["input_ids"]
        _POOL["words"] = ([w for (i, w), e in zip(cand, enc) if list(e) == [i]], len(ids))
        _POOL["of"] = weakref.ref(tokenizer)  # the last tokenizer's pool, never a stale one
    return _POOL["words"]


_POOL: dict = {}


def _raises(tokenizer) -> bool:
    """Whether the tokenizer raises on an unknown word (then words are encoded one by one)."""
    return try_encode(tokenizer, " \u2603\u2603") is None


def _bos(tokenizer) -> str:
    if tokenizer is None:
        return "BOS"
    bos = tokenizer.bos_token
    return bos if bos and len(encode(tokenizer, bos)) == 1 else ""


def _text(bos: str, words: list[str]) -> str:
    return bos + "".join(" " + w for w in words)


def _make_rows(name: str, n, seed, tokenizer, every: bool):
    n = 64 if n is None else n
    pool, total = token_pool(tokenizer)
    if len(pool) < 2 * LENGTH:
        shown = ", ".join(repr(tokenizer.decode([i])) for i in range(min(6, len(tokenizer))))
        raise refuse(name, tokenizer, [
            f"only {len(pool)} of {total} tokens round-trip decode -> encode as one word "
            f"(at least {2 * LENGTH} needed); e.g. the first tokens {shown}"])
    bos = _bos(tokenizer)
    n_bos = 1 if bos else 0

    def make(rng):
        drawn = rng.sample(pool, 2 * LENGTH)
        s, s2 = drawn[:LENGTH], drawn[LENGTH:]
        k = LENGTH - 1 if every else rng.randint(1, LENGTH - 1)
        clean, corrupted = _text(bos, s + s[:k]), _text(bos, s2 + s[:k])
        if tokenizer is not None:
            c, r = try_encode(tokenizer, clean), try_encode(tokenizer, corrupted)
            if c is None or r is None or len(c) != n_bos + LENGTH + k or len(r) != len(c):
                return "the prompt does not re-tokenize to the drawn tokens"
        row = {"clean": clean, "corrupted": corrupted, "answer": " " + s[k],
               "wrong_answer": " " + s2[k], "length": LENGTH, "k": k}
        if every:  # read at the repeated s_0 .. s_{L-2}; they predict s_1 .. s_{L-1}
            row.update(positions=list(range(n_bos + LENGTH, n_bos + 2 * LENGTH - 1)),
                       answer=[" " + w for w in s[1:]], wrong_answer=[" " + w for w in s2[1:]])
        return row

    out, dropped = draw(n, seed, make)
    what = "single-token (round-trip)" if tokenizer is not None else "toy tokens"
    notes = {"tokens": survival(len(pool), total, what)}
    if tokenizer is not None:
        notes["tokenizer"] = describe(tokenizer)
    return task_rows(name, tokenizer, out, notes, wanted=n, dropped=dropped)


def rows(n: int | None, seed: int = 0, tokenizer=None):
    """``n`` (default 64) rows of ``induction-random`` (the metric reads the last position)."""
    return _make_rows("induction-random", n, seed, tokenizer, every=False)


def rows_all(n: int | None, seed: int = 0, tokenizer=None):
    """``n`` (default 64) rows of ``induction-random-all`` (per-position answers)."""
    return _make_rows("induction-random-all", n, seed, tokenizer, every=True)
