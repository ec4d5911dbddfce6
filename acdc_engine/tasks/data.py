"""A task's rows tokenized for one tokenizer (:class:`TaskData`), cut into batches."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import torch

from .batch import Batch
from .task import Row

__all__ = ["TaskData"]

@dataclass(kw_only=True)
class TaskData:
    """A task's rows tokenized for one tokenizer, built by keyword.

    ``answers``/``wrongs`` hold each row's answer (and wrong answer; None when the task has
    none) per read position (-1: none, a row with an ``answer_set`` alone); ``positions`` the
    read positions (absolute, into the possibly extended prompt; default the last token);
    ``answer_set``/``wrong_set`` token sets, ``extra`` (key -> one value per row) the rows'
    other keys. :attr:`answer` and :attr:`wrong` read the last read position's.
    """

    task: str
    rows: list[Row]
    clean: list[list[int]]
    corrupted: list[list[int]]
    answers: list[list[int]]
    wrongs: list[list[int]] | None = None
    source: str = ""
    meta: dict = field(default_factory=dict)
    positions: list[list[int]] | None = None
    answer_set: list[list[int]] | None = None
    wrong_set: list[list[int]] | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.positions is None:
            self.positions = [[len(c) - 1] for c in self.clean]

    @property
    def answer(self) -> list[int]:
        """Each row's answer at its last read position (read-only)."""
        return [a[-1] for a in self.answers]

    @property
    def wrong(self) -> list[int] | None:
        """Each row's wrong answer at its last read position (None without wrong answers)."""
        return None if self.wrongs is None else [w[-1] if w else -1 for w in self.wrongs]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def has_answer(self) -> bool:
        """Every row names an answer (a row with an ``answer_set`` alone does not)."""
        return all(a >= 0 for a in self.answer)

    @property
    def data_hash(self) -> str:
        """sha256 of the rows as JSON (first 16 hex digits): identifies the data.

        Bookkeeping keys (starting with ``_``, e.g. a row's line in its file) are left out."""
        rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in self.rows]
        blob = json.dumps(rows, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def batches(self, batch_size: int = 32, device=None) -> list[Batch]:
        """Batches of equal token length and number of read positions, in a deterministic
        order."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, ids in enumerate(self.clean):
            groups.setdefault((len(ids), len(self.positions[i])), []).append(i)
        out = []
        for key in sorted(groups):
            idx = groups[key]
            for s in range(0, len(idx), batch_size):
                out.append(self._batch(idx[s : s + batch_size]).to(device))
        return out

    def _batch(self, part: list[int]) -> Batch:
        t = lambda xs: torch.tensor([xs[i] for i in part])  # noqa: E731
        return Batch(
            clean=t(self.clean), corrupted=t(self.corrupted), rows=part,
            positions=t(self.positions), answers=t(self.answers),
            wrongs=None if self.wrongs is None else t(self.wrongs),
            answer_set=None if self.answer_set is None else _padded(self.answer_set, part),
            wrong_set=None if self.wrong_set is None else _padded(self.wrong_set, part),
            extra={k: _column([v[i] for i in part]) for k, v in self.extra.items()})


def _padded(sets: list[list[int]], part: list[int]) -> torch.Tensor:
    """[len(part), m] the sets of rows ``part``, padded with -1."""
    m = max(len(sets[i]) for i in part)
    return torch.tensor([sets[i] + [-1] * (m - len(sets[i])) for i in part], dtype=torch.long)


def _column(values: list) -> torch.Tensor | list:
    """A tensor when every value is a number (or an equal-shape list of numbers), else a list."""
    try:
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            return torch.tensor(values)
        if all(isinstance(v, bool) for v in values):
            return torch.tensor(values)
    except (TypeError, ValueError):
        pass
    return list(values)
