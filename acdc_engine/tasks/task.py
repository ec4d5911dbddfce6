"""A task: a name, a function that returns rows (the format is in :mod:`acdc_engine.tasks`),
and its defaults."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable

__all__ = ["Task", "TaskRows", "Row", "ROW_KEYS"]

Row = dict[str, Any]
"""One task row: a JSON object with ``clean``, ``corrupted`` and the keys in :data:`ROW_KEYS`."""
ROW_KEYS = ("clean", "corrupted", "positions", "answer", "wrong_answer", "answer_set",
            "wrong_set")
"""The row keys the engine reads; any other key is kept as it is."""


class TaskRows(list):
    """A task's rows with ``notes`` about how they were made (e.g. ``{"names": "41 of 60
    single-token"}``): they land in ``TaskData.meta["notes"]``, are printed by ``acdc discover``
    and logged as MLflow params ``task.<key>``."""

    def __init__(self, rows=(), notes: dict | None = None):
        super().__init__(rows)
        self.notes = dict(notes or {})


def _takes_tokenizer(fn: Callable) -> bool:
    """Does ``fn`` accept a keyword ``tokenizer``? (Its signature is read once.)"""
    try:
        return _signature_takes_tokenizer(fn)
    except TypeError:  # an unhashable callable: read its signature every time
        return _signature_takes_tokenizer.__wrapped__(fn)


@functools.lru_cache(maxsize=None)
def _signature_takes_tokenizer(fn: Callable) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "tokenizer" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


@dataclass(frozen=True)
class Task:
    """A named set of clean/corrupted pairs.

    ``rows(n, seed)`` (or ``rows(n, seed, tokenizer=...)``) returns up to ``n`` rows (all of
    them when ``n`` is None). ``model`` is the model id the task was made for, used when the
    user names no model. ``multi_token_answer``: score answers of several tokens by teacher
    forcing (module docstring).
    """

    name: str
    rows: Callable[..., list[Row]]
    description: str = ""
    default_metric: str = "logit_diff"
    default_ablation: str = "corrupted"
    default_n: int = 64
    model: str | None = None
    multi_token_answer: bool = False

    def load_rows(self, n: int | None, seed: int = 0, tokenizer=None) -> list[Row]:
        """``rows(n, seed)``, passing ``tokenizer`` when the rows function accepts it."""
        if tokenizer is not None and _takes_tokenizer(self.rows):
            return self.rows(n, seed, tokenizer=tokenizer)
        return self.rows(n, seed)
