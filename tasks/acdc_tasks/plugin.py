"""Built-in task plugin: indirect object identification (IOI) on the shipped ``tiny-ioi`` model,
and the literature's tasks for any tokenizer (:mod:`acdc_tasks.literature`, docs/tasks.md).

Registered through the ``acdc_engine`` entry-point group like any third-party task plugin.
"""

from __future__ import annotations

from functools import lru_cache

from acdc_engine.hookspecs import hookimpl


def _ioi_rows(n: int | None, seed: int = 0, tokenizer=None) -> list[dict]:
    from .ioi import make_pairs, with_positions

    return [with_positions(r, tokenizer) for r in make_pairs(64 if n is None else n, seed=seed)]


@lru_cache(maxsize=1)
def ioi_task():
    """The ``ioi`` task (built on first use: importing this plugin imports no torch)."""
    from acdc_engine.tasks import Task

    return Task(
        name="ioi",
        rows=_ioi_rows,
        description=(
            "Indirect object identification: 'When Mary and John went to the store , John gave a "
            "drink to' -> ' Mary' (not ' John'); corrupted prompts use three other names (ABC)."
        ),
        default_metric="logit_diff",
        default_ablation="corrupted",
        default_n=64,
        model="tiny-ioi",
    )


#: the literature tasks: name -> (module, rows function, default metric, description)
LITERATURE = {
    "ioi-names": ("ioi_names", "rows", "logit_diff",
                  "IOI with real first names (Wang et al. 2022, ABBA/BABA templates): 'Then, "
                  "John and Mary went to the store. John gave a drink to' -> ' Mary' (not "
                  "' John'); corrupted = three other names (ABC)"),
    "greater-than": ("greater_than", "rows", "set_prob_diff",
                     "Hanna et al. 2023: 'The war lasted from the year 1732 to the year 17' "
                     "-> a year > 32; probability on years > YY minus <= YY; corrupted start "
                     "year 1701"),
    "docstring": ("docstring", "rows", "logit_diff",
                  "Heimersheim & Janiak 2023: the next ':param' name of a Python docstring; "
                  "corrupted = random names in the docstring"),
    "gender-bias": ("gender_bias", "rows", "logit_diff",
                    "'The nurse said that' -> ' she' vs ' he' by the profession's "
                    "stereotype; corrupted = a gender-neutral noun ('The person')"),
    "induction-random": ("induction_random", "rows", "logit_diff",
                         "repeated random tokens of the model's own vocabulary: 'seq seq[:k]' "
                         "-> seq[k]; corrupted = another random first half"),
    "induction-random-all": ("induction_random", "rows_all", "logit_diff",
                             "induction-random read at every position of the repetition "
                             "(per-position answers)"),
}


def _literature_rows(module: str, fn: str):
    """A rows function importing its module on first use (``acdc plugins`` stays fast)."""

    def rows(n: int | None, seed: int = 0, tokenizer=None):
        from importlib import import_module

        return getattr(import_module(f"acdc_tasks.literature.{module}"), fn)(
            n, seed, tokenizer=tokenizer)

    rows.__name__ = rows.__qualname__ = f"{module}.{fn}"
    return rows


# the shipped model trained on a task, used when the user names no model
DEFAULT_MODEL = {"ioi-names": "gpt2-ioi-bpe"}


@lru_cache(maxsize=1)
def literature_tasks():
    """The literature tasks. Each runs on any model whose tokenizer keeps enough of its words
    (see docs/tasks.md); ``ioi-names`` defaults to the shipped ``gpt2-ioi-bpe``, trained on it."""
    from acdc_engine.tasks import Task

    return [Task(name=name, rows=_literature_rows(module, fn), description=desc,
                 default_metric=metric, default_ablation="corrupted", default_n=64,
                 model=DEFAULT_MODEL.get(name))
            for name, (module, fn, metric, desc) in LITERATURE.items()]


@hookimpl
def acdc_tasks():
    return [ioi_task(), *literature_tasks()]


@hookimpl
def acdc_task_from_path(path):
    """A task from a ``.jsonl`` or ``.csv`` file of pairs (see :mod:`acdc_tasks.pairfile`)."""
    from pathlib import Path

    from .pairfile import SUFFIXES, pair_file_task

    if Path(path).suffix.lower() not in SUFFIXES:
        return None
    return pair_file_task(path)
