"""What a :class:`~acdc_engine.view.session.Session` reports after every change: the
:class:`Summary` of the per-example metric and predictions, computed by a :class:`Summarizer`
that owns the task's answer tokens and row order and remembers which examples the model got
right when the session opened (for "flipped").
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from ..problem import Problem

__all__ = ["Summary", "Summarizer"]


@dataclass
class Summary:
    """What the model does on the task's examples under the current interventions."""

    metric: float
    """Mean of the task's metric over the examples."""
    prob: float
    """Mean probability of the answer token at the last position (a token-set task such as
    greater-than: the probability mass on its answer set; ``accuracy`` then counts the examples
    whose answer set outweighs their wrong set)."""
    logit_diff: float | None
    """Mean logit(answer) - logit(wrong answer); None when the task has no wrong answers."""
    accuracy: float
    """Share of examples where the answer beats the wrong answer (or is the top token)."""
    delta: float
    """Change of ``metric`` since the previous step."""
    flipped: list[int]
    """Examples (row numbers) whose prediction differs from the unintervened model's."""
    flipped_step: list[int]
    """Examples whose prediction changed at the last step."""
    per_example: list[float]
    """The metric of every example, by row number."""
    ms: float = 0.0
    """Server-side time of the evaluation, in milliseconds."""

    def as_dict(self) -> dict:
        return asdict(self)


class Summarizer:
    """Turns one evaluation (per-example metric and last-position logits, in batch order) into
    a :class:`Summary`. The first evaluation it sees is the reference for ``flipped``."""

    def __init__(self, problem: Problem):
        self.problem = problem
        order = [r for b in problem.batches for r in b.rows]  # batch order -> row number
        self.rows = torch.tensor(order)
        """Row number of each example, in batch order: ``[n]``."""
        self.answer = torch.cat([b.answer.cpu() for b in problem.batches])
        """The answer token of each example, in batch order: ``[n]``."""
        wrong = [b.wrong for b in problem.batches]
        self.wrong = None if any(w is None for w in wrong) else torch.cat(
            [w.cpu() for w in wrong])
        """The wrong answer's token of each example (``[n]``, batch order), or None."""
        self._base_correct: torch.Tensor | None = None
        self._last_correct: torch.Tensor | None = None

    def _set_masses(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(mass on answer_set, mass on wrong_set)`` per example ([n] each, batch order), or
        None when the task has no answer sets (answers are single tokens)."""
        batches = self.problem.batches
        if any(b.answer_set is None for b in batches):
            return None
        probs = logits.float().softmax(-1).split([len(b) for b in batches])
        cpu = [b.to("cpu") for b in batches]
        good = torch.cat([b.set_mass(p, "answer_set") for b, p in zip(cpu, probs)])
        bad = [b.set_mass(p, "wrong_set") if b.wrong_set is not None else torch.zeros(len(b))
               for b, p in zip(cpu, probs)]
        return good, torch.cat(bad)

    def __call__(self, values: torch.Tensor, logits: torch.Tensor,
                 previous: Summary | None, t0: float) -> Summary:
        """The summary of ``values`` ``[n]`` and ``logits`` ``[n, vocab]`` (batch order);
        ``previous`` gives ``delta``, ``t0`` (``time.perf_counter()``) the time taken."""
        n = torch.arange(len(values))
        sets = self._set_masses(logits)
        if sets is not None:  # a token-set task (greater-than): mass on each set
            probs, wrong_mass = sets
            diff, correct = None, probs > wrong_mass
        elif self.wrong is not None:
            probs = logits.softmax(-1)[n, self.answer]  # [n]
            diff = logits[n, self.answer] - logits[n, self.wrong]  # [n]
            correct = diff > 0
        else:
            probs = logits.softmax(-1)[n, self.answer]  # [n]
            diff = None
            correct = logits.argmax(-1) == self.answer
        if self._base_correct is None:
            self._base_correct = correct
        prev_correct = correct if self._last_correct is None else self._last_correct
        self._last_correct = correct
        rows = self.rows
        order = torch.argsort(rows)  # batch order -> row order
        return Summary(
            metric=float(values.mean()), prob=float(probs.mean()),
            logit_diff=None if diff is None else float(diff.mean()),
            accuracy=float(correct.float().mean()),
            delta=0.0 if previous is None else float(values.mean()) - previous.metric,
            flipped=sorted(rows[correct != self._base_correct].tolist()),
            flipped_step=sorted(rows[correct != prev_correct].tolist()),
            per_example=values[order].tolist(),
            ms=1000 * (time.perf_counter() - t0),
        )
