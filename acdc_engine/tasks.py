"""Tasks: named datasets of clean/corrupted prompt pairs, and their tokenized form.

A :class:`Task` is what a plugin registers: a name, a function that returns rows, and the
defaults (metric, ablation). A row is a dict with ``clean`` and ``corrupted`` prompts, the
``answer`` the model should give on the clean prompt and (for contrastive metrics) the
``wrong_answer`` (the answer the corrupted prompt points to). Answers are single tokens; the
metric reads the logits at the last position of the prompt.

:func:`prepare` tokenizes and validates every row before any model work is done, and reports
every offending row at once: an answer that is not one token, clean and corrupted prompts of
different token lengths, an empty dataset. Batches group rows of equal length, so no padding
(and no attention mask) is ever needed.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from .errors import TaskDataError

__all__ = ["Task", "TaskData", "Batch", "prepare"]

Row = dict[str, Any]


@dataclass(frozen=True)
class Task:
    """A named set of clean/corrupted pairs.

    ``rows(n, seed)`` returns up to ``n`` rows (all of them when ``n`` is None). ``model`` is the
    model id the task was made for, used when the user names no model.
    """

    name: str
    rows: Callable[[int | None, int], list[Row]]
    description: str = ""
    default_metric: str = "logit_diff"
    default_ablation: str = "corrupted"
    default_n: int = 64
    model: str | None = None


@dataclass
class Batch:
    """Rows of one token length. ``clean``/``corrupted``: [batch, pos]; answers: [batch]."""

    clean: torch.Tensor
    corrupted: torch.Tensor
    answer: torch.Tensor
    wrong: torch.Tensor | None
    rows: list[int]
    clean_logits: torch.Tensor | None = None  # [batch, vocab] at the last position, for KL

    def __len__(self) -> int:
        return self.clean.shape[0]

    def to(self, device) -> Batch:
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Batch(move(self.clean), move(self.corrupted), move(self.answer),
                     move(self.wrong), self.rows, move(self.clean_logits))


@dataclass
class TaskData:
    """A task's rows tokenized for one tokenizer."""

    task: str
    rows: list[Row]
    clean: list[list[int]]
    corrupted: list[list[int]]
    answer: list[int]
    wrong: list[int] | None
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def data_hash(self) -> str:
        """sha256 of the rows as JSON (first 16 hex digits): identifies the data.

        Bookkeeping keys (starting with ``_``, e.g. a row's line in its file) are left out."""
        rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in self.rows]
        blob = json.dumps(rows, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def batches(self, batch_size: int = 32, device=None) -> list[Batch]:
        """Batches of equal token length, in a deterministic order."""
        by_len: dict[int, list[int]] = {}
        for i, ids in enumerate(self.clean):
            by_len.setdefault(len(ids), []).append(i)
        out = []
        for length in sorted(by_len):
            idx = by_len[length]
            for s in range(0, len(idx), batch_size):
                part = idx[s : s + batch_size]
                out.append(Batch(
                    clean=torch.tensor([self.clean[i] for i in part]),
                    corrupted=torch.tensor([self.corrupted[i] for i in part]),
                    answer=torch.tensor([self.answer[i] for i in part]),
                    wrong=None if self.wrong is None
                    else torch.tensor([self.wrong[i] for i in part]),
                    rows=part,
                ).to(device))
        return out


def _single_token(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def prepare(task: Task | str, tokenizer, rows: list[Row], source: str = "") -> TaskData:
    """Tokenize and validate ``rows``; raise :class:`TaskDataError` listing every bad row.

    Rows are named ``row N`` (1-based), or ``line N`` when they carry their line in a data file
    as ``_line`` (see ``acdc_tasks.pairfile``)."""
    name = task if isinstance(task, str) else task.name
    source = source or f"of task {name!r}"
    if tokenizer is None:
        raise TaskDataError(source, ["the model has no tokenizer; load a model that ships one"])
    if not rows:
        raise TaskDataError(source, ["no rows: the task returned an empty dataset"])
    problems: list[str] = []
    clean, corrupted, answer, wrong = [], [], [], []
    has_wrong = all(r.get("wrong_answer") not in (None, "") for r in rows)
    for i, r in enumerate(rows):
        where = f"line {r['_line']}" if r.get("_line") is not None else f"row {i + 1}"
        missing = [k for k in ("clean", "corrupted", "answer") if r.get(k) in (None, "")]
        if missing:
            problems.append(f"{where}: missing {', '.join(missing)}")
            continue
        c = tokenizer(r["clean"], add_special_tokens=False)["input_ids"]
        k = tokenizer(r["corrupted"], add_special_tokens=False)["input_ids"]
        if len(c) != len(k):
            problems.append(
                f"{where}: clean prompt is {len(c)} tokens but corrupted is {len(k)} "
                f"({r['clean']!r} vs {r['corrupted']!r}); pairs must align token by token"
            )
        if len(c) == 0:
            problems.append(f"{where}: the clean prompt is empty after tokenization")
        a = _single_token(tokenizer, r["answer"])
        if len(a) != 1:
            problems.append(f"{where}: answer {r['answer']!r} is {len(a)} tokens, not one {a}")
        w = _single_token(tokenizer, r["wrong_answer"]) if has_wrong else [0]
        if has_wrong and len(w) != 1:
            problems.append(
                f"{where}: wrong_answer {r['wrong_answer']!r} is {len(w)} tokens, not one {w}"
            )
        unk = getattr(tokenizer, "unk_token_id", None)
        special = {getattr(tokenizer, f"{t}_token_id", None) for t in ("bos", "eos", "pad")}
        # word-level vocabularies map a typo to <unk>: one token, but the wrong one
        # (GPT-2's unk is its <|endoftext|>, a real token: not checked)
        if unk is not None and unk not in special:
            for key, ids in (("clean", c), ("corrupted", k), ("answer", a),
                             ("wrong_answer", w if has_wrong else [])):
                if unk in ids:
                    problems.append(f"{where}: {key} {r[key]!r} has a word the tokenizer does "
                                    f"not know (it maps to {tokenizer.unk_token!r})")
        clean.append(c)
        corrupted.append(k)
        answer.append(a[0] if a else -1)
        wrong.append(w[0] if w else -1)
    if problems:
        raise TaskDataError(source, problems)
    return TaskData(name, rows, clean, corrupted, answer, wrong if has_wrong else None, source)
