"""``ioi-names``: indirect object identification with real first names (Wang et al. 2022).

Template (the paper's 15 BABA templates and their ABBA mirror images)::

    Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to   ->  " [A]"

``A`` is the indirect object (IO, the answer), ``B`` the subject (S, named twice; the wrong
answer). ``order`` is ``"BABA"`` when S is introduced first, ``"ABBA"`` when IO is.

Corruption: the paper's ABC distribution: the same template, place and object with the three
name slots (both introductions and the repeated subject) filled by three distinct other
names, so nothing in the prompt says which name is the answer.

Metric: ``logit_diff`` (IO minus S at the last position). Extra keys: ``template`` (index
into :data:`TEMPLATES`), ``order``, and the clean prompt's token indices ``io_pos``
(the IO's introduction), ``s1_pos`` (the subject's introduction), ``s2_pos`` (its repetition)
and ``end_pos`` (the last token, where the metric reads); without a tokenizer they count
whitespace-separated words.

Survival: names, places and objects are kept when they are one token with their leading space
(``" Mary"``); the floors are 5 names (IO, S and three for the ABC corruption), 2 places,
2 objects and 8 distinct examples.
"""

from __future__ import annotations

import re

from .common import (
    draw, ids, mismatch, position, require_words, single_tokens, survival, task_rows,
)
from .words import FIRST_NAMES, OBJECTS, PLACES

__all__ = ["BABA_TEMPLATES", "TEMPLATES", "rows"]

NAME = "ioi-names"

# Wang et al. 2022's BABA templates, without the final " [A]" (the answer).
BABA_TEMPLATES: tuple[str, ...] = (
    "Then, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
    "Then, [B] and [A] had a lot of fun at the [PLACE]. [B] gave a [OBJECT] to",
    "Then, [B] and [A] were working at the [PLACE]. [B] decided to give a [OBJECT] to",
    "Then, [B] and [A] were thinking about going to the [PLACE]. [B] wanted to give a "
    "[OBJECT] to",
    "Then, [B] and [A] had a long argument, and afterwards [B] said to",
    "After [B] and [A] went to the [PLACE], [B] gave a [OBJECT] to",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give it to",
    "When [B] and [A] got a [OBJECT] at the [PLACE], [B] decided to give the [OBJECT] to",
    "While [B] and [A] were working at the [PLACE], [B] gave a [OBJECT] to",
    "While [B] and [A] were commuting to the [PLACE], [B] gave a [OBJECT] to",
    "After the lunch, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
    "Afterwards, [B] and [A] went to the [PLACE]. [B] gave a [OBJECT] to",
    "Then, [B] and [A] had a long argument. Afterwards [B] said to",
    "The [PLACE] [B] and [A] went to had a [OBJECT]. [B] gave it to",
    "Friends [B] and [A] found a [OBJECT] at the [PLACE]. [B] gave it to",
)


def _abba(template: str) -> str:
    """The ABBA mirror: the first two names swapped (IO introduced first)."""
    return template.replace("[B] and [A]", "[A] and [B]", 1)


#: every template: the BABA ones (even index) interleaved with their ABBA mirrors (odd index)
TEMPLATES: tuple[str, ...] = tuple(t for b in BABA_TEMPLATES for t in (b, _abba(b)))
_SLOT = re.compile(r"\[(A|B|PLACE|OBJECT)\]")


def _fill(template: str, names: list[str], place: str, obj: str) -> tuple[str, list[int]]:
    """The prompt and the character offsets of its name slots (in order); ``names`` fills
    the name slots in order of appearance."""
    out, starts, last, it = [], [], 0, iter(names)
    for m in _SLOT.finditer(template):
        out.append(template[last:m.start()])
        slot = m.group(1)
        word = place if slot == "PLACE" else obj if slot == "OBJECT" else next(it)
        if slot in ("A", "B"):
            starts.append(sum(map(len, out)))
        out.append(word)
        last = m.end()
    out.append(template[last:])
    return "".join(out), starts


def _slots(template: str) -> list[str]:
    return [s for s in _SLOT.findall(template) if s in ("A", "B")]


def rows(n: int | None, seed: int = 0, tokenizer=None):
    """``n`` (default 64) IOI rows for ``tokenizer`` (see the module docstring)."""
    n = 64 if n is None else n
    names, bad_names = single_tokens(tokenizer, FIRST_NAMES)
    places, bad_places = single_tokens(tokenizer, PLACES)
    objects, bad_objects = single_tokens(tokenizer, OBJECTS)
    require_words(NAME, tokenizer, "first names (with a leading space)", names, bad_names,
                  floor=5)  # IO, S and three other names for the ABC corruption
    require_words(NAME, tokenizer, "places", places, bad_places, floor=2)
    require_words(NAME, tokenizer, "objects", objects, bad_objects, floor=2)

    def make(rng):
        t = rng.randrange(len(TEMPLATES))
        template = TEMPLATES[t]
        io, s, *others = rng.sample(names, 5)
        place, obj = rng.choice(places), rng.choice(objects)
        slots = _slots(template)
        clean, starts = _fill(template, [io if x == "A" else s for x in slots], place, obj)
        corrupted, _ = _fill(template, others[: len(slots)], place, obj)
        why = mismatch(tokenizer, clean, corrupted)
        if why:
            return why
        full = ids(tokenizer, clean)
        pos = [position(tokenizer, clean, c, full) for c in starts]
        if None in pos:
            return "a name's token index is ambiguous"
        s_pos = [p for p, x in zip(pos, slots) if x == "B"]
        return {
            "clean": clean, "corrupted": corrupted, "answer": " " + io,
            "wrong_answer": " " + s, "template": t, "order": "BABA" if t % 2 == 0 else "ABBA",
            "io_pos": pos[slots.index("A")], "s1_pos": s_pos[0], "s2_pos": s_pos[1],
            "end_pos": len(full) - 1,
        }

    out, dropped = draw(n, seed, make)
    notes = {"names": survival(len(names), len(FIRST_NAMES)),
             "places": survival(len(places), len(PLACES)),
             "objects": survival(len(objects), len(OBJECTS))}
    return task_rows(NAME, tokenizer, out, notes, wanted=n, dropped=dropped)
