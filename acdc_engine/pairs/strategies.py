"""Corruption strategies: from a clean prompt (and its answer) to candidate corrupted prompts.

Each strategy is a function ``(prompt, answer, ctx) -> list[str]``: corrupted prompts in the
order to try them (the first with the clean prompt's token length is kept), or
:class:`Reject` when the prompt does not have what the strategy needs (a row rejected, with
the reason). ``ctx`` is a :class:`Context`: the tokenizer, a seeded random generator, the
entities and the token position.

    entity-swap   the answer's entity (or the first entity) -> another of its kind
    token-swap    the token at --position (default: the answer's first occurrence) -> another
    role-swap     ABBA/BABA: the repeated name's last occurrence -> the other name
    number-change the last number -> another of as many digits
    random-token  control: a random token (not the last) -> a random word token
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field

from .words import ENTITIES

__all__ = ["STRATEGIES", "Context", "Reject", "Tokens"]

_WORD = re.compile(r"[A-Za-z]+")
_NUMBER = re.compile(r"\d+")
_TRIES = 12


class Reject(Exception):
    """A row the strategy (or the check after it) cannot make a pair of: ``reason`` (a short
    key, counted in the survival report) and ``detail`` (what was wrong in this row)."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class Tokens:
    """The tokenizer's ids and pieces, cached; the pool of word tokens for the random swaps."""

    def __init__(self, tokenizer):
        self.tok = tokenizer
        self._cache: dict[str, list[int]] = {}
        self._pool: dict[bool, list[int]] | None = None

    def ids(self, text: str) -> list[int]:
        if text not in self._cache:
            self._cache[text] = list(self.tok(text, add_special_tokens=False)["input_ids"])
        return self._cache[text]

    def piece(self, i: int) -> str:
        return self.tok.decode([i])

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids)

    def single(self, word: str) -> int | None:
        """The id of ``word`` when it is one token, else None."""
        try:
            ids = self.ids(word)
        except Exception:  # a word-level vocabulary without an unknown token
            return None
        unk = getattr(self.tok, "unk_token_id", None)
        return ids[0] if len(ids) == 1 and (ids[0] != unk or self.piece(ids[0]) == word) else None

    def words(self, spaced: bool) -> list[int]:
        """Ids of alphabetic word tokens with (``spaced``) or without a leading space."""
        if self._pool is None:
            pool: dict[bool, list[int]] = {True: [], False: []}
            special = set(getattr(self.tok, "all_special_ids", []) or [])
            for i in range(len(self.tok)):
                if i in special:
                    continue
                p = self.piece(i)
                if p.strip().isalpha() and p.strip().isascii():
                    pool[p.startswith(" ")].append(i)
            self._pool = pool
        return self._pool[spaced]


@dataclass
class Context:
    """What a strategy may use: ``tokens``, ``rng``, ``entities`` (kind -> words) and
    ``position`` (token-swap's token index, negative from the end; None for the default)."""

    tokens: Tokens
    rng: random.Random
    entities: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(ENTITIES))
    position: int | None = None


def _entities(prompt: str, ctx: Context) -> list[tuple[str, str, int]]:
    """(word, kind, offset) of every entity word in ``prompt`` that is one token."""
    kinds = {w: k for k, words in ctx.entities.items() for w in words}
    out = []
    for m in _WORD.finditer(prompt):
        w = m.group()
        if w in kinds:
            spaced = m.start() > 0 and prompt[m.start() - 1] == " "
            if ctx.tokens.single(" " + w if spaced else w) is not None:
                out.append((w, kinds[w], m.start()))
    return out


def _replace(prompt: str, old: str, new: str) -> str:
    return re.sub(rf"\b{re.escape(old)}\b", new, prompt)


def entity_swap(prompt: str, answer: str, ctx: Context) -> list[str]:
    found = _entities(prompt, ctx)
    if not found:
        raise Reject("no-entity", "no name, place or object that is one token for this "
                     "tokenizer")
    target = next((e for e in found if e[0] == answer.strip()), found[0])
    word, kind, _ = target
    present = set(_WORD.findall(prompt)) | {answer.strip()}
    others = [w for w in ctx.entities[kind] if w not in present
              and ctx.tokens.single(" " + w) is not None]
    if not others:
        raise Reject("no-entity", f"no other one-token word of kind {kind!r} to put for "
                     f"{word!r}")
    ctx.rng.shuffle(others)
    return [_replace(prompt, word, w) for w in others[:_TRIES]]


def role_swap(prompt: str, answer: str, ctx: Context) -> list[str]:
    names = [(w, off) for w, kind, off in _entities(prompt, ctx) if kind == "names"]
    distinct = list(dict.fromkeys(w for w, _ in names))
    counts = {w: sum(1 for n, _ in names if n == w) for w in distinct}
    repeated = [w for w in distinct if counts[w] > 1]
    if len(distinct) != 2 or len(repeated) != 1:
        seen = ", ".join(f"{w} x{counts[w]}" for w in distinct) or "none"
        raise Reject("no-roles", "role swap needs two one-token names, one of them repeated "
                     f"(found: {seen})")
    s = repeated[0]
    io = next(w for w in distinct if w != s)
    last = max(off for w, off in names if w == s)
    return [prompt[:last] + io + prompt[last + len(s):]]


def number_change(prompt: str, answer: str, ctx: Context) -> list[str]:
    numbers = list(_NUMBER.finditer(prompt))
    if not numbers:
        raise Reject("no-number", "no number in the prompt")
    m = numbers[-1]
    digits = len(m.group())
    lo = 0 if digits == 1 or m.group().startswith("0") else 10 ** (digits - 1)
    values = [v for v in range(lo, 10 ** digits) if f"{v:0{digits}d}" != m.group()]
    picks = ctx.rng.sample(values, min(_TRIES, len(values)))
    return [prompt[:m.start()] + f"{v:0{digits}d}" + prompt[m.end():] for v in picks]


def _swap_at(prompt: str, pos: int, ctx: Context) -> list[str]:
    """Prompts with the token at ``pos`` replaced by random word tokens of the same spacing,
    kept when they tokenize back to the same ids but that one."""
    ids = ctx.tokens.ids(prompt)
    old = ctx.tokens.piece(ids[pos])
    pool = [i for i in ctx.tokens.words(old.startswith(" ")) if i != ids[pos]]
    out = []
    for i in ctx.rng.sample(pool, min(len(pool), 8 * _TRIES)):
        new = ids[:pos] + [i] + ids[pos + 1:]
        text = ctx.tokens.decode(new)
        if ctx.tokens.ids(text) == new:
            out.append(text)
            if len(out) == _TRIES:
                break
    if not out:
        raise Reject("no-swap", f"no word token at position {pos} keeps the tokenization "
                     f"(token {old!r})")
    return out


def token_swap(prompt: str, answer: str, ctx: Context) -> list[str]:
    ids = ctx.tokens.ids(prompt)
    if ctx.position is None:
        a = ctx.tokens.single(answer)
        if a is None or a not in ids:
            raise Reject("no-position", f"the answer {answer!r} is not a token of the "
                         "prompt; give the position to swap (--position)")
        return _swap_at(prompt, ids.index(a), ctx)
    if not -len(ids) <= ctx.position < len(ids):
        raise Reject("no-position", f"position {ctx.position} is out of range for a "
                     f"{len(ids)}-token prompt")
    return _swap_at(prompt, ctx.position % len(ids), ctx)


def random_token(prompt: str, answer: str, ctx: Context) -> list[str]:
    ids = ctx.tokens.ids(prompt)
    if len(ids) < 2:
        raise Reject("no-swap", "a one-token prompt has no token to swap but the last")
    return _swap_at(prompt, ctx.rng.randrange(len(ids) - 1), ctx)


STRATEGIES = {
    "entity-swap": entity_swap, "token-swap": token_swap, "role-swap": role_swap,
    "number-change": number_change, "random-token": random_token,
}
"""name -> strategy function; the names the CLI's ``--strategy`` takes."""
