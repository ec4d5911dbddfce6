'''``docstring``: the next parameter name in a docstring (Heimersheim & Janiak 2023, "A circuit
for Python docstrings in a 4-layer attention-only transformer").

Template (names drawn from :data:`~acdc_tasks.literature.words.PARAM_NAMES`)::

    def port(self, load, size, files, last):
        """oil column piece

        :param load: crime population
        :param size: unit dark
        :param                                  ->  " files"

The model has to find which parameter of the ``def`` line comes after the ones already
documented and copy its name. Corruption: the paper's random-docstring variant: the names in
the ``:param`` lines are replaced by random other names (the ``def`` line and the descriptions
are unchanged), so the documented names no longer point to a position in the signature.

Metric: ``logit_diff`` with ``answer`` = the third parameter and ``wrong_answer`` = the fourth
(the next undocumented one, the likeliest confusion); ``wrong_set`` lists every other
parameter of the ``def`` line and ``answer_set`` the answer, for ``set_logit_diff`` (the
paper compares the answer with the best wrong parameter name). Extra keys: ``function``.

Survival: parameter names are kept when one token with a leading space (``" files"``);
examples whose clean and corrupted prompts do not align token for token (a name that merges
with the following ``:``) are dropped and counted. Floors: 8 names, 8 distinct examples.
'''

from __future__ import annotations

from .common import draw, mismatch, require_words, single_tokens, survival, task_rows
from .words import DOC_WORDS, FUNCTION_NAMES, PARAM_NAMES

__all__ = ["N_PARAMS", "prompt", "rows"]

NAME = "docstring"
N_PARAMS = 4  # parameters after self; the first two are documented, the third is the answer
N_DOCUMENTED = 2


def prompt(function: str, params: list[str], documented: list[str], words: list[str]) -> str:
    """The prompt: a ``def`` line with ``params``, a docstring whose ``:param`` lines name
    ``documented`` (described by pairs of ``words`` after a three-word summary), and an open
    ``:param`` line."""
    lines = [f"def {function}(self, {', '.join(params)}):", f'    """{" ".join(words[:3])}', ""]
    for i, name in enumerate(documented):
        lines.append(f"    :param {name}: {words[3 + 2 * i]} {words[4 + 2 * i]}")
    lines.append("    :param")
    return "\n".join(lines)


def rows(n: int | None, seed: int = 0, tokenizer=None):
    """``n`` (default 64) docstring rows for ``tokenizer`` (see the module docstring)."""
    n = 64 if n is None else n
    names, bad = single_tokens(tokenizer, PARAM_NAMES)
    require_words(NAME, tokenizer, "parameter names (with a leading space)", names, bad,
                  floor=N_PARAMS + N_DOCUMENTED + 2)

    def make(rng):
        chosen = rng.sample(names, N_PARAMS + N_DOCUMENTED)
        params, random_names = chosen[:N_PARAMS], chosen[N_PARAMS:]
        function = rng.choice(FUNCTION_NAMES)
        words = rng.sample(DOC_WORDS, 3 + 2 * N_DOCUMENTED)
        clean = prompt(function, params, params[:N_DOCUMENTED], words)
        corrupted = prompt(function, params, random_names, words)
        why = mismatch(tokenizer, clean, corrupted)
        if why:
            return why
        answer = params[N_DOCUMENTED]
        return {"clean": clean, "corrupted": corrupted, "answer": " " + answer,
                "wrong_answer": " " + params[N_DOCUMENTED + 1], "answer_set": [" " + answer],
                "wrong_set": [" " + p for p in params if p != answer], "function": function}

    out, dropped = draw(n, seed, make)
    notes = {"names": survival(len(names), len(PARAM_NAMES))}
    return task_rows(NAME, tokenizer, out, notes, wanted=n, dropped=dropped)
