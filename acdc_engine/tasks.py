"""Tasks: named datasets of clean/corrupted prompt pairs, and their tokenized form.

A :class:`Task` is what a plugin registers: a name, a function that returns rows, and the
defaults (metric, ablation). A row is a dict:

``clean``, ``corrupted``
    the prompts (equal token lengths: the pairs align token by token).
``positions`` (optional)
    where the metric reads: omitted = the last prompt token; ``"all"`` = every prompt
    position; a list of token indices into the prompt (negative counts from the end).
``answer`` / ``wrong_answer``
    one token (a string), or a list of strings, one per read position. ``wrong_answer`` is what
    the corrupted prompt points to (contrastive metrics); optional.
``answer_set`` / ``wrong_set`` (optional)
    token sets (lists of one-token strings): greater-than's years > YY vs years <= YY. A row
    with an ``answer_set`` may omit ``answer``.
any other key
    carried to the batch as ``batch.extra[key]`` (keys starting with ``_`` are bookkeeping).

With ``Task(multi_token_answer=True)`` an answer of n tokens is scored by teacher forcing: its
first n-1 tokens are appended to both prompts and the metric reads the n positions that predict
the answer's tokens (see :func:`prepare`). ``Task.rows`` may take a keyword ``tokenizer`` (the
model's) and may return :class:`TaskRows`, whose ``notes`` land in ``TaskData.meta["notes"]``.

:func:`prepare` tokenizes and validates every row before any model work is done, and reports
every offending row at once. Batches group rows of equal token length and equal number of
read positions, so no padding (and no attention mask) is ever needed.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
from dataclasses import dataclass, field, fields
from typing import Any, Callable

import torch

from .errors import TaskDataError

__all__ = ["Task", "TaskRows", "TaskData", "Batch", "prepare", "ROW_KEYS"]

Row = dict[str, Any]
ROW_KEYS = ("clean", "corrupted", "positions", "answer", "wrong_answer", "answer_set",
            "wrong_set")


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


_KEEP = ("extra", "last_only")  # Batch fields that are not one entry per example


def _move(t, device):
    return t.to(device) if isinstance(t, torch.Tensor) else t


@dataclass
class Batch:
    """Rows of one token length and one number ``k`` of read positions.

    clean, corrupted: [B, pos] token ids; answer, wrong: [B] the answer at the last read
    position; positions: [B, k] absolute read positions; answers, wrongs: [B, k] per read
    position; answer_set, wrong_set: [B, m] token sets padded with -1 (use :meth:`set_mass`
    or :meth:`token_mask`); extra: the rows' other keys; clean_logits: [B, k, vocab] the clean
    model's logits at the read positions (when the metric needs them; [B, vocab] in the view
    :meth:`at`). Built with only the first fields (as before positions existed) it reads the
    last position.
    """

    clean: torch.Tensor
    corrupted: torch.Tensor
    answer: torch.Tensor
    wrong: torch.Tensor | None
    rows: list[int]
    clean_logits: torch.Tensor | None = None  # [B, k, vocab]
    positions: torch.Tensor | None = None  # [B, k]
    answers: torch.Tensor | None = None  # [B, k]
    wrongs: torch.Tensor | None = None  # [B, k]
    answer_set: torch.Tensor | None = None  # [B, m], -1 = padding
    wrong_set: torch.Tensor | None = None  # [B, m'], -1 = padding
    extra: dict = field(default_factory=dict)
    last_only: bool | None = None  # every row reads its last position alone

    def __post_init__(self):
        b, p = self.clean.shape
        if self.positions is None:
            self.positions = torch.full((b, 1), p - 1, dtype=torch.long, device=self.clean.device)
            self.last_only = True
        if self.last_only is None:
            self.last_only = self.positions.shape[1] == 1 and bool((self.positions == p - 1).all())
        if self.answers is None:
            self.answers = self.answer[:, None].expand(b, self.k)
        if self.wrongs is None and self.wrong is not None:
            self.wrongs = self.wrong[:, None].expand(b, self.k)

    def __len__(self) -> int:
        return self.clean.shape[0]

    @property
    def k(self) -> int:
        """The number of read positions per row."""
        return self.positions.shape[1]

    @property
    def read_positions(self) -> torch.Tensor | None:
        """What to pass as ``patching.run(positions=...)``: None when only the last position is
        read (``run(last_only=True)`` then gives the same [B, 1, vocab])."""
        return None if self.last_only else self.positions

    def to(self, device) -> Batch:
        vals = {f.name: _move(getattr(self, f.name), device) for f in fields(self)}
        vals["extra"] = {k: _move(v, device) for k, v in self.extra.items()}
        return Batch(**vals)

    def repeat(self, c: int) -> Batch:
        """Every example repeated ``c`` times, candidate-major (``c`` stacked patches)."""

        def rep(t):
            if isinstance(t, torch.Tensor):
                return t.repeat(c, *([1] * (t.dim() - 1)))
            return None if t is None else list(t) * c

        vals = {f.name: rep(getattr(self, f.name)) for f in fields(self) if f.name not in _KEEP}
        vals.update(extra={k: rep(v) for k, v in self.extra.items()}, last_only=self.last_only)
        return Batch(**vals)

    def select(self, idx) -> Batch:
        """The examples ``idx`` (a list or long tensor of indices into this batch)."""
        t = torch.as_tensor(idx, dtype=torch.long)

        def pick(v):
            if isinstance(v, torch.Tensor):
                return v[t.to(v.device)]
            return None if v is None else [v[i] for i in t.tolist()]

        vals = {f.name: pick(getattr(self, f.name)) for f in fields(self) if f.name not in _KEEP}
        vals.update(extra={k: pick(v) for k, v in self.extra.items()}, last_only=self.last_only)
        return Batch(**vals)

    def at(self, j: int) -> Batch:
        """The view of read position ``j``: ``answer = answers[:, j]``, ``clean_logits[:, j]``
        ([B, vocab]), ``positions[:, j:j+1]``; what an ``reads="each"`` metric is given."""
        j = j % self.k
        pick = lambda t: None if t is None else t[:, j : j + 1]  # noqa: E731
        return Batch(
            self.clean, self.corrupted, self.answers[:, j],
            None if self.wrongs is None else self.wrongs[:, j], self.rows,
            None if self.clean_logits is None else self.clean_logits[:, j],
            pick(self.positions), pick(self.answers), pick(self.wrongs), self.answer_set,
            self.wrong_set, self.extra, self.last_only and j == self.k - 1)

    def token_mask(self, name: str, vocab: int) -> torch.Tensor:
        """[B, vocab] bool: True on the tokens of set ``name`` ("answer_set"/"wrong_set")."""
        ids = getattr(self, name)
        if ids is None:
            raise ValueError(f"this batch has no {name}")
        mask = torch.zeros(len(self), vocab + 1, dtype=torch.bool, device=ids.device)
        mask.scatter_(1, torch.where(ids < 0, vocab, ids), True)  # padding -> the spare column
        return mask[:, :vocab]

    def set_mass(self, probs: torch.Tensor, name: str) -> torch.Tensor:
        """Sum of ``probs`` [B, vocab] over the tokens of set ``name``: [B]."""
        return (probs * self.token_mask(name, probs.shape[-1])).sum(-1)


@dataclass
class TaskData:
    """A task's rows tokenized for one tokenizer.

    ``answer``/``wrong`` hold the answer at the last read position of each row; ``positions``
    (absolute, into the possibly extended prompt), ``answers``/``wrongs`` (per read position),
    ``answer_set``/``wrong_set`` and ``extra`` (key -> one value per row) the rest.
    """

    task: str
    rows: list[Row]
    clean: list[list[int]]
    corrupted: list[list[int]]
    answer: list[int]
    wrong: list[int] | None
    source: str = ""
    meta: dict = field(default_factory=dict)
    positions: list[list[int]] | None = None
    answers: list[list[int]] | None = None
    wrongs: list[list[int]] | None = None
    answer_set: list[list[int]] | None = None
    wrong_set: list[list[int]] | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.positions is None:
            self.positions = [[len(c) - 1] for c in self.clean]
        if self.answers is None:
            self.answers = [[a] for a in self.answer]
        if self.wrongs is None and self.wrong is not None:
            self.wrongs = [[w] for w in self.wrong]

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
            clean=t(self.clean), corrupted=t(self.corrupted), answer=t(self.answer),
            wrong=None if self.wrong is None else t(self.wrong), rows=part,
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


def prepare(task: Task | str, tokenizer, rows: list[Row], source: str = "") -> TaskData:
    """Tokenize and validate ``rows``; raise :class:`TaskDataError` listing every bad row.

    Rows are named ``row N`` (1-based), or ``line N`` when they carry their line in a data file
    as ``_line`` (see ``acdc_tasks.pairfile``). Notes of a :class:`TaskRows` go to
    ``meta["notes"]``."""
    name = task if isinstance(task, str) else task.name
    multi = False if isinstance(task, str) else task.multi_token_answer
    source = source or f"of task {name!r}"
    if tokenizer is None:
        raise TaskDataError(source, ["the model has no tokenizer; load a model that ships one"])
    if not rows:
        raise TaskDataError(source, ["no rows: the task returned an empty dataset"])
    from .task_rows import RowReader

    reader = RowReader(tokenizer, rows, multi)
    for i, r in enumerate(rows):
        reader.read(i, r)
    if reader.problems:
        raise TaskDataError(source, reader.problems)
    out = reader.data(name, source)
    notes = getattr(rows, "notes", None)
    if notes:
        out.meta["notes"] = dict(notes)
    return out
