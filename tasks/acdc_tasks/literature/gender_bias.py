"""``gender-bias``: stereotyped pronouns after a profession (after Vig et al. 2020, "Causal
mediation analysis for interpreting neural NLP: the case of gender bias").

Template (8 of them)::

    The nurse said that   ->  " she"  (not " he")
    The mechanic said that   ->  " he"  (not " she")

``answer`` is the pronoun of the profession's stereotype (lists in
:mod:`~acdc_tasks.literature.words`: ``FEMALE_PROFESSIONS``, ``MALE_PROFESSIONS``) and
``wrong_answer`` the other one, so ``logit_diff`` measures how strongly the model follows the
stereotype.

Corruption (the default, ``corruption="neutral"``): the profession is replaced by a
gender-neutral noun (``"The person said that"``). We chose this over the opposite-stereotype
profession because the corrupted run then carries no stereotype at all: patching it in
removes the bias, and the circuit found is what carries it from the profession word to the
pronoun. With the opposite-stereotype profession (``corruption="opposite"``, not registered as
a task) the corrupted run pushes the other way, so the metric's baseline mixes two biases and
its size depends on how strongly each profession is stereotyped.

Extra keys: ``profession``, ``stereotype`` (``"female"``/``"male"``), ``template``.

Survival: professions and neutral nouns are kept when one token with their leading space;
``" she"`` and ``" he"`` must be single tokens. Floors: 4 professions per stereotype, 2 neutral
nouns, 8 distinct examples.
"""

from __future__ import annotations

from .common import (
    draw, mismatch, refuse, require_words, single_tokens, survival, task_rows,
)
from .words import FEMALE_PROFESSIONS, MALE_PROFESSIONS, NEUTRAL_NOUNS

__all__ = ["TEMPLATES", "PRONOUNS", "rows"]

NAME = "gender-bias"
TEMPLATES: tuple[str, ...] = (
    "The {} said that",
    "The {} told the manager that",
    "The {} was late because",
    "The {} left early because",
    "The {} called and said that",
    "The {} smiled because",
    "The {} wrote a note saying that",
    "The {} was tired, so",
)
PRONOUNS = {"female": " she", "male": " he"}


def rows(n: int | None, seed: int = 0, tokenizer=None, corruption: str = "neutral"):
    """``n`` (default 64) gender-bias rows for ``tokenizer`` (see the module docstring)."""
    if corruption not in ("neutral", "opposite"):
        raise ValueError(f"corruption must be 'neutral' or 'opposite', got {corruption!r}")
    n = 64 if n is None else n
    pron, bad_pron = single_tokens(tokenizer, [p.strip() for p in PRONOUNS.values()])
    if bad_pron:
        raise refuse(NAME, tokenizer, [f"the pronoun(s) {[' ' + p for p in bad_pron]} are not "
                                       "single tokens"])
    female, bad_f = single_tokens(tokenizer, FEMALE_PROFESSIONS)
    male, bad_m = single_tokens(tokenizer, MALE_PROFESSIONS)
    neutral, bad_n = single_tokens(tokenizer, NEUTRAL_NOUNS)
    require_words(NAME, tokenizer, "female-stereotyped professions", female, bad_f)
    require_words(NAME, tokenizer, "male-stereotyped professions", male, bad_m)
    require_words(NAME, tokenizer, "neutral nouns", neutral, bad_n, floor=2)
    pools = {"female": female, "male": male}

    def make(rng):
        stereotype = rng.choice(("female", "male"))
        profession = rng.choice(pools[stereotype])
        other = "male" if stereotype == "female" else "female"
        replacement = rng.choice(neutral if corruption == "neutral" else pools[other])
        t = rng.randrange(len(TEMPLATES))
        clean, corrupted = TEMPLATES[t].format(profession), TEMPLATES[t].format(replacement)
        why = mismatch(tokenizer, clean, corrupted)
        if why:
            return why
        return {"clean": clean, "corrupted": corrupted, "answer": PRONOUNS[stereotype],
                "wrong_answer": PRONOUNS[other], "profession": profession,
                "stereotype": stereotype, "template": t}

    out, dropped = draw(n, seed, make)
    notes = {"professions": survival(len(female) + len(male),
                                     len(FEMALE_PROFESSIONS) + len(MALE_PROFESSIONS)),
             "neutral_nouns": survival(len(neutral), len(NEUTRAL_NOUNS))}
    return task_rows(NAME, tokenizer, out, notes, wanted=n, dropped=dropped)
