"""Synthetic indirect-object-identification (IOI) prompt pairs.

The IOI task (Wang et al., 2022, "Interpretability in the Wild") asks a
language model to complete a sentence such as::

    When Mary and John went to the store , John gave a drink to  ->  " Mary"

Two names are introduced; one of them (the *subject*, S = John) is repeated,
and the correct completion is the other one (the *indirect object*, IO = Mary).
A model solves the task if it prefers the IO over the subject, which is
measured by the logit difference ``logit(IO) - logit(S)`` at the last prompt
position.

Circuit discovery needs *pairs* of prompts: a ``clean`` prompt on which the
model does the task and a ``corrupted`` prompt that has the same shape (here:
the same number of words, word for word aligned) but lacks the information the
task needs.  We use the IOI paper's "ABC" corruption: the three name slots of
the same template (two introductions and the repeated subject) are filled with
three *other*, mutually distinct names, so that neither the IO nor the subject
appears and the prompt no longer says which of the two is the answer.

Everything here is pure Python and deterministic for a given seed.  Prompts
are space-separated words with punctuation as separate words (`` , `` and
`` . ``), so that a whitespace word-level tokenizer (as used by the embedded
``tiny-ioi`` model) maps every word, and every answer such as ``" Mary"``, to
exactly one token.

Public API
----------
``NAMES``, ``PLACES``, ``OBJECTS``, ``TEMPLATES``
    The word lists and templates.  Templates use the fields ``{A}`` (the
    indirect object, i.e. the answer), ``{B}`` (the subject, appearing twice),
    ``{PLACE}`` and ``{OBJECT}``; every template ends right before the answer.
``make_pairs(n, seed=0)``
    ``n`` dicts with keys ``clean``, ``corrupted``, ``answer``, ``wrong_answer``
    and ``template`` (index into ``TEMPLATES``).
``vocabulary()``
    Sorted list of every word the generator can produce.
"""

from __future__ import annotations

import random
import string

__all__ = ["NAMES", "OBJECTS", "PLACES", "TEMPLATES", "make_pairs", "vocabulary"]

# fmt: off
NAMES: tuple[str, ...] = (
    "Mary", "John", "Alice", "Bob", "Tom", "Sarah", "James", "Emma", "David", "Lisa",
    "Michael", "Anna", "Daniel", "Kate", "Paul", "Laura", "Mark", "Julia", "Peter", "Rose",
)

PLACES: tuple[str, ...] = (
    "store", "park", "school", "garden", "station",
    "restaurant", "hospital", "office", "beach", "library",
)

OBJECTS: tuple[str, ...] = (
    "ball", "book", "drink", "gift", "letter",
    "snack", "ticket", "basket", "necklace", "computer",
)
# fmt: on

# {A} = indirect object (answer), {B} = subject (appears twice, wrong answer).
# Four sentence shapes, each in the ABBA and the BABA name order.
TEMPLATES: tuple[str, ...] = (
    "When {A} and {B} went to the {PLACE} , {B} gave a {OBJECT} to",
    "When {B} and {A} went to the {PLACE} , {B} gave a {OBJECT} to",
    "Then , {A} and {B} had a long day at the {PLACE} . {B} handed the {OBJECT} to",
    "Then , {B} and {A} had a long day at the {PLACE} . {B} handed the {OBJECT} to",
    "After {A} and {B} arrived at the {PLACE} , {B} decided to give the {OBJECT} to",
    "After {B} and {A} arrived at the {PLACE} , {B} decided to give the {OBJECT} to",
    "{A} and {B} were working at the {PLACE} . {B} threw a {OBJECT} to",
    "{B} and {A} were working at the {PLACE} . {B} threw a {OBJECT} to",
)

_NAME_FIELDS = ("A", "B")


def _parse(template: str) -> list[tuple[str, str | None]]:
    """``(literal_text, field_name_or_None)`` chunks of a template."""
    return [(lit, field) for lit, field, _, _ in string.Formatter().parse(template)]


def _fill(template: str, slot_names: list[str] | None, fields: dict[str, str]) -> str:
    """Fill ``template``.

    Non-name fields come from ``fields``.  Name fields (``{A}``/``{B}``) come
    from ``fields`` too, unless ``slot_names`` is given, in which case the
    name slots are filled in order of appearance from ``slot_names``.
    """
    out: list[str] = []
    slots = iter(slot_names) if slot_names is not None else None
    for lit, field in _parse(template):
        out.append(lit)
        if field is None:
            continue
        if field in _NAME_FIELDS and slots is not None:
            out.append(next(slots))
        else:
            out.append(fields[field])
    return "".join(out)


def _n_name_slots(template: str) -> int:
    return sum(1 for _, field in _parse(template) if field in _NAME_FIELDS)


def make_pairs(n: int, seed: int = 0) -> list[dict]:
    """Generate ``n`` clean/corrupted IOI prompt pairs, deterministically.

    Each item is a dict::

        {
            "clean": "When Mary and John went to the store , John gave a drink to",
            "corrupted": "When Anna and Paul went to the store , Kate gave a drink to",
            "answer": " Mary",        # indirect object, with a leading space
            "wrong_answer": " John",  # subject, with a leading space
            "template": 0,            # index into TEMPLATES
        }

    The template, the two names, the place and the object are drawn uniformly
    at random; the corrupted prompt uses the same template, place and object
    with the three name slots filled by three distinct names different from
    both the answer and the wrong answer (the IOI paper's "ABC" corruption),
    so it has exactly the same word count as the clean prompt.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    pairs: list[dict] = []
    for _ in range(n):
        t = rng.randrange(len(TEMPLATES))
        template = TEMPLATES[t]
        io, subj = rng.sample(NAMES, 2)
        place = rng.choice(PLACES)
        obj = rng.choice(OBJECTS)
        others = [name for name in NAMES if name not in (io, subj)]
        corrupt_names = rng.sample(others, _n_name_slots(template))
        fields = {"A": io, "B": subj, "PLACE": place, "OBJECT": obj}
        pairs.append(
            {
                "clean": _fill(template, None, fields),
                "corrupted": _fill(template, corrupt_names, fields),
                "answer": " " + io,
                "wrong_answer": " " + subj,
                "template": t,
            }
        )
    return pairs


def with_positions(row: dict, tokenizer=None) -> dict:
    """``row`` with its named positions (docs/positions.md): the token indices ``io_pos`` (the
    indirect object), ``s1_pos`` and ``s2_pos`` (the subject's two mentions) and ``end_pos``
    (the last token) of the clean prompt for ``tokenizer`` (words without one). A row whose
    prefix tokenizes differently from the whole prompt keeps no position keys."""
    from .literature.common import ids, position

    words = TEMPLATES[row["template"]].split()
    clean = row["clean"]
    starts, at = [], 0
    for w in clean.split(" "):
        starts.append(at)
        at += len(w) + 1
    full = ids(tokenizer, clean)
    slot = {k: [i for i, w in enumerate(words) if w == "{" + k + "}"] for k in _NAME_FIELDS}
    found = [position(tokenizer, clean, starts[i], full)
             for i in (slot["A"][0], slot["B"][0], slot["B"][1])]
    if None in found:
        return row
    return {**row, "io_pos": found[0], "s1_pos": found[1], "s2_pos": found[2],
            "end_pos": len(full) - 1}


def vocabulary() -> list[str]:
    """Every word that templates, names, places and objects can produce, sorted."""
    words: set[str] = set(NAMES) | set(PLACES) | set(OBJECTS)
    for template in TEMPLATES:
        for lit, _ in _parse(template):
            words.update(lit.split())
    return sorted(words)
