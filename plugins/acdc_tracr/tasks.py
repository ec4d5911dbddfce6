"""Tasks on the ground-truth models: ``tracr-reverse``, ``tracr-frac-prevs``, their ``-all``
variants, and ``induction``.

By default a metric reads the logits at the **last position** of the prompt. For the tracr
programs, which produce an output at every position, that fixes what the first two tasks
measure; the ``-all`` variants read every position after BOS instead:

``tracr-reverse``
    Prompt ``BOS t_1 ... t_n`` (n = 2..5, tokens 1..3). reverse's output at the last position
    is ``t_1``, the first input token; it depends on the whole program (length, ``opp_idx``,
    the reversing head), so the full ground-truth circuit is exercised. The corrupted prompt
    is a resampled input of the same length whose first token differs from ``t_1``;
    ``answer`` = ``t_1``, ``wrong_answer`` = the corrupted first token. Default metric:
    ``logit_diff``; ``kl_div`` (ACDC's choice for this task) and ``l2`` work.
``tracr-frac-prevs``
    Prompt ``BOS t_1 ... t_n`` (n = 1..5, tokens w x y z). The output at the last position is
    the fraction of ``x`` among all the tokens. Corrupted: a resampled input of the same
    length. The output is a single number (the model's readout has one entry), so the default
    metric is ``l2``, the squared distance to the clean model's output (ACDC's choice).
    ``answer`` is ``BOS``: its id (0) is the index of that one readout entry; no metric of this
    task compares answers.
``tracr-reverse-all``
    The same prompts as ``tracr-reverse``, read at **every** position after BOS (the row's
    ``positions``), with per-position answers: at position ``i`` reverse outputs
    ``t_{n+1-i}``, so ``answer`` is the reversed clean input and ``wrong_answer`` the reversed
    corrupted input (a resampled input of the same length, different from the clean one
    somewhere; where the two agree the position's logit difference is 0). A last-position
    metric sees only ``t_1``; with every position the corrupted pair carries signal wherever
    any token differs.
``tracr-frac-prevs-all``
    The same prompts as ``tracr-frac-prevs``, read at every position after BOS: position ``i``
    outputs the fraction of ``x`` among ``t_1 .. t_i``. ``answer`` is ``BOS`` (the readout's one
    entry) at every position and ``value`` lists the running fractions (the program's exact
    outputs); default metric ``l2``, averaged over the positions.
``induction``
    Repeated random sequences on ``toy-induction`` (see :mod:`acdc_tasks.induction`).

Corrupted inputs are resampled, as in the ACDC paper. For the tracr models the recommended
ablation is nevertheless ``zero`` (the tasks' default; see docs/validation.md): with a resampled
input of the same length, the length sub-circuit of reverse computes the same values in the
clean and the corrupted run, so no corrupted-activation method can see it.
"""

from __future__ import annotations

import random

from acdc_engine.tasks import Task

__all__ = ["TASKS", "reverse_rows", "frac_prevs_rows", "reverse_all_rows", "frac_prevs_all_rows",
           "induction_rows"]

REVERSE_TOKENS = ("1", "2", "3")
FRAC_PREVS_TOKENS = ("w", "x", "y", "z")


def reverse_rows(n: int | None, seed: int = 0, lengths=(2, 3, 4, 5)) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(64 if n is None else n):
        length = rng.choice(lengths)
        clean = [rng.choice(REVERSE_TOKENS) for _ in range(length)]
        corrupted = [rng.choice(REVERSE_TOKENS) for _ in range(length)]
        while corrupted[0] == clean[0]:
            corrupted[0] = rng.choice(REVERSE_TOKENS)
        rows.append({"clean": " ".join(["BOS", *clean]),
                     "corrupted": " ".join(["BOS", *corrupted]),
                     "answer": clean[0], "wrong_answer": corrupted[0]})
    return rows


def frac_prevs_rows(n: int | None, seed: int = 0, lengths=(1, 2, 3, 4, 5)) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(64 if n is None else n):
        length = rng.choice(lengths)
        clean = [rng.choice(FRAC_PREVS_TOKENS) for _ in range(length)]
        corrupted = [rng.choice(FRAC_PREVS_TOKENS) for _ in range(length)]
        rows.append({"clean": " ".join(["BOS", *clean]),
                     "corrupted": " ".join(["BOS", *corrupted]),
                     "answer": "BOS",  # id 0: the index of the single readout entry
                     "value": clean.count("x") / length})
    return rows


def reverse_all_rows(n: int | None, seed: int = 0, lengths=(2, 3, 4, 5)) -> list[dict]:
    """``tracr-reverse`` read at every position after BOS (per-position answers)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(64 if n is None else n):
        length = rng.choice(lengths)
        clean = [rng.choice(REVERSE_TOKENS) for _ in range(length)]
        corrupted = list(clean)
        while corrupted == clean:
            corrupted = [rng.choice(REVERSE_TOKENS) for _ in range(length)]
        rows.append({"clean": " ".join(["BOS", *clean]),
                     "corrupted": " ".join(["BOS", *corrupted]),
                     "positions": list(range(1, length + 1)),
                     "answer": clean[::-1], "wrong_answer": corrupted[::-1]})
    return rows


def frac_prevs_all_rows(n: int | None, seed: int = 0, lengths=(1, 2, 3, 4, 5)) -> list[dict]:
    """``tracr-frac-prevs`` read at every position after BOS; ``value`` lists the running
    fractions (the program's output at each read position)."""
    rows = frac_prevs_rows(n, seed, lengths)
    for r in rows:
        toks = r["clean"].split()[1:]
        r["positions"] = list(range(1, len(toks) + 1))
        r["value"] = [toks[: i + 1].count("x") / (i + 1) for i in range(len(toks))]
    return rows


def induction_rows(n: int | None, seed: int = 0) -> list[dict]:
    from acdc_tasks.induction import make_pairs

    return make_pairs(64 if n is None else n, seed=seed)


TASKS = [
    Task("tracr-reverse", reverse_rows, model="tracr-reverse", default_metric="logit_diff",
         default_ablation="zero", default_n=64,
         description="tracr reverse program: the output at the last position is the first "
                     "input token; corrupted = resampled input of the same length"),
    Task("tracr-frac-prevs", frac_prevs_rows, model="tracr-frac-prevs", default_metric="l2",
         default_ablation="zero", default_n=64,
         description="tracr frac_prevs program: the output at the last position is the "
                     "fraction of 'x' tokens; corrupted = resampled input of the same length"),
    Task("tracr-reverse-all", reverse_all_rows, model="tracr-reverse",
         default_metric="logit_diff", default_ablation="zero", default_n=64,
         description="tracr reverse program read at every position after BOS: position i "
                     "outputs the i-th token from the end; corrupted = resampled input"),
    Task("tracr-frac-prevs-all", frac_prevs_all_rows, model="tracr-frac-prevs",
         default_metric="l2", default_ablation="zero", default_n=64,
         description="tracr frac_prevs program read at every position after BOS: the "
                     "running fraction of 'x'; corrupted = resampled input"),
    Task("induction", induction_rows, model="toy-induction", default_metric="logit_diff",
         default_ablation="corrupted", default_n=64,
         description="repeated random tokens 'BOS s s[:k]' -> s[k]; corrupted = a different "
                     "random first segment"),
]
