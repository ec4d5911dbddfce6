"""The literature's tasks, tokenizer-agnostic (issue 10): one module per task.

Every generator is ``rows(n, seed=0, tokenizer=None)``: seeded, keeping only the words that are
single tokens for ``tokenizer`` where they are used, reporting what survived in
``TaskRows.notes`` and refusing (``TaskDataError``) below a floor. See docs/tasks.md.

==========================  =====================================================
``ioi-names``               :mod:`.ioi_names` (Wang et al. 2022)
``greater-than``            :mod:`.greater_than` (Hanna et al. 2023)
``docstring``               :mod:`.docstring` (Heimersheim & Janiak 2023)
``gender-bias``             :mod:`.gender_bias` (after Vig et al. 2020)
``induction-random(-all)``  :mod:`.induction_random` (Olsson et al. 2022)
==========================  =====================================================

Word lists: :mod:`.words`; a corpus and trained tokenizers for tests: :mod:`.corpus`.
Importing the package (or :mod:`.words`) imports no torch; ``GENERATORS`` (name -> rows
function) imports the generators on first use.
"""

from __future__ import annotations

__all__ = ["GENERATORS"]


def _generators() -> dict:
    from . import docstring, gender_bias, greater_than, induction_random, ioi_names

    return {"ioi-names": ioi_names.rows, "greater-than": greater_than.rows,
            "docstring": docstring.rows, "gender-bias": gender_bias.rows,
            "induction-random": induction_random.rows,
            "induction-random-all": induction_random.rows_all}


def __getattr__(name: str):
    if name == "GENERATORS":
        globals()["GENERATORS"] = gens = _generators()
        return gens
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
