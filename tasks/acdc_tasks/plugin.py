"""Built-in task plugin: indirect object identification (IOI) on the shipped ``tiny-ioi`` model.

Registered through the ``acdc_engine`` entry-point group like any third-party task plugin.
"""

from __future__ import annotations

from functools import lru_cache

from acdc_engine.hookspecs import hookimpl


def _ioi_rows(n: int | None, seed: int = 0) -> list[dict]:
    from .ioi import make_pairs

    return make_pairs(64 if n is None else n, seed=seed)


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


@hookimpl
def acdc_tasks():
    return [ioi_task()]


@hookimpl
def acdc_task_from_path(path):
    """A task from a ``.jsonl`` or ``.csv`` file of pairs (see :mod:`acdc_tasks.pairfile`)."""
    from pathlib import Path

    from .pairfile import SUFFIXES, pair_file_task

    if Path(path).suffix.lower() not in SUFFIXES:
        return None
    return pair_file_task(path)
