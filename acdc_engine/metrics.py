"""Metrics: logits at the read positions (and the batch) -> one number per example.

A metric is a small named object around one function with a fixed signature. With
``reads="each"`` (the default) it sees one read position at a time::

    fn(logits: Tensor[batch, vocab], batch.at(j)) -> Tensor[batch]

and its values are averaged over the batch's read positions (a task that reads the last
position only has one: the call is exactly the metric's function). With ``reads="all"`` it
sees every read position at once::

    fn(logits: Tensor[batch, k, vocab], batch) -> Tensor[batch]

Every caller goes through :meth:`Metric.score` with the logits at ``batch.positions``
(:meth:`acdc_engine.problem.Problem.score` runs and scores in one call).

``higher_is_better`` says which way the behaviour goes (logit difference: up; KL to the clean
model: down). Faithfulness normalizes either kind the same way. The built-in metrics (logit
difference, probability difference, KL divergence to the clean model, negative log-likelihood,
accuracy, the summed log-probability of per-position or multi-token answers, and probability
or logsumexp differences over token sets) live in the ``acdc_builtins`` plugin and are
registered through the same hook as any plugin's.

Stacked candidates (ACDC's engine scores many patched variants of one batch at once): a metric
may give a *prepared* form, ``prepare(batch.at(j)) -> f`` with ``f(logits [c, batch, vocab]) ->
[c, batch]``, built once per batch and equal to ``fn`` on each of the ``c`` stacks to float
rounding (KL divergence keeps the clean side's log-probabilities and entropy there instead of
recomputing them per candidate); ``f`` may overwrite the logits it is given (the caller gives
them up). A metric whose prepared form reads a few logit columns declares
them, ``columns(batch.at(j)) -> [m]`` vocabulary ids, and then ``f`` is given the logits at those
columns alone, ``[c, batch, m]`` (logit difference: the answer and wrong answer; a caller can
then unembed ``m`` rows of the unembedding instead of the vocabulary). :meth:`Metric.stacked`
wraps either (or the plain ``fn`` on the batch repeated ``c`` times when there is none).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch

from .errors import MetricError

__all__ = ["Metric", "Faithfulness", "Stacked", "check_values", "READS"]

READS = ("each", "all")
"""How a metric reads several read positions: each on its own (then averaged), or all together."""


@dataclass(frozen=True)
class Metric:
    """A named metric. ``needs`` lists what the batch must carry ("answer", "wrong",
    "answer_set", "wrong_set", "clean_logits"); ``reads`` is "each" (one read position at a
    time, averaged) or "all" (every read position at once); see the module docstring."""

    name: str
    fn: Callable[[torch.Tensor, object], torch.Tensor]
    higher_is_better: bool = True
    differentiable: bool = True
    needs: tuple[str, ...] = ()
    description: str = ""
    reads: str = "each"
    prepare: Callable[[object], Callable[[torch.Tensor], torch.Tensor]] | None = None
    """Optional prepared form (``reads="each"`` only; see the module docstring)."""
    columns: Callable[[object], torch.Tensor] | None = None
    """Optional: the vocabulary columns ``prepare``'s function reads (needs ``prepare``)."""

    def __post_init__(self):
        if self.reads not in READS:
            raise MetricError(f"metric {self.name!r}: reads must be one of {READS}, got "
                              f"{self.reads!r}")
        if (self.prepare is not None or self.columns is not None) and self.reads != "each":
            raise MetricError(f"metric {self.name!r}: a prepared form needs reads='each'")
        if self.columns is not None and self.prepare is None:
            raise MetricError(f"metric {self.name!r}: columns needs a prepared form")

    def stacked(self, batch) -> Stacked:
        """The scorer of ``c`` stacked candidates of ``batch`` (see :class:`Stacked`)."""
        return Stacked(self, batch)

    def score(self, logits: torch.Tensor, batch) -> torch.Tensor:
        """[B] values from ``logits`` [B, k, vocab] at ``batch.positions`` [B, k]."""
        k = batch.positions.shape[1]
        if logits.dim() != 3 or logits.shape[:2] != (len(batch), k):
            raise MetricError(f"metric {self.name!r} is scored on logits [batch, read positions,"
                              f" vocab] = [{len(batch)}, {k}, vocab], got "
                              f"{tuple(logits.shape)}")
        if self.reads == "all":
            return check_values(self.name, self.fn(logits, batch), batch)
        if k == 1:
            return check_values(self.name, self.fn(logits[:, 0], batch.at(0)), batch)
        values = [check_values(self.name, self.fn(logits[:, j], batch.at(j)), batch)
                  for j in range(k)]
        return torch.stack(values).mean(0)

    def __call__(self, logits: torch.Tensor, batch) -> torch.Tensor:
        """:meth:`score`; logits [B, vocab] are those of the last read position alone."""
        if logits.dim() == 3:
            return self.score(logits, batch)
        if self.reads == "all":
            return self.score(logits[:, None], batch.at(-1))
        return check_values(self.name, self.fn(logits, batch.at(-1)), batch)


class Stacked:
    """One batch's metric over ``c`` stacked candidates, prepared once per batch::

        scorer = metric.stacked(batch)
        scorer.columns        # None: logits over the vocabulary; else [M] vocabulary ids
        scorer(logits)        # logits [c, B, k, vocab or M] -> [c, B]

    Equal to ``metric.score(logits.reshape(c * B, k, -1), batch.repeat(c)).view(c, B)`` to
    float rounding (exactly that when the metric has no prepared form). The call may overwrite
    ``logits``: pass a tensor you no longer need."""

    def __init__(self, metric: Metric, batch):
        self.metric, self.batch = metric, batch
        self._reps: dict = {}
        self.columns: torch.Tensor | None = None
        self._fns = None
        if metric.prepare is None:
            return
        views = [batch.at(j) for j in range(batch.k)]
        self._fns = [metric.prepare(view) for view in views]
        if metric.columns is not None:
            cols = [torch.as_tensor(metric.columns(view), dtype=torch.long,
                                    device=batch.clean.device).reshape(-1) for view in views]
            ends = torch.tensor([len(c) for c in cols]).cumsum(0).tolist()
            self._spans = [slice(e - len(c), e) for c, e in zip(cols, ends)]
            self.columns = torch.cat(cols)  # [M]: position j's columns at _spans[j]

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        c, B, k = logits.shape[:3]
        if self._fns is None:
            if c not in self._reps:
                self._reps[c] = self.batch if c == 1 else self.batch.repeat(c)
            flat = logits.reshape(c * B, k, logits.shape[-1])
            return self.metric.score(flat, self._reps[c]).view(c, B)
        values = []
        for j, fn in enumerate(self._fns):
            z = logits[:, :, j]  # [c, B, vocab or M]
            if self.columns is not None:
                z = z[..., self._spans[j]]
            v = fn(z)
            if not isinstance(v, torch.Tensor) or v.shape != (c, B):
                shape = getattr(v, "shape", type(v).__name__)
                raise MetricError(f"metric {self.metric.name!r}: its prepared form must return "
                                  f"[candidates, batch] = [{c}, {B}], got {shape}")
            values.append(check_values(self.metric.name, v.reshape(-1), _Rows(self.batch, c)))
        out = values[0] if k == 1 else torch.stack(values).mean(0)
        return out.view(c, B)


class _Rows:
    """What :func:`check_values` reads of a batch repeated ``c`` times (without repeating)."""

    def __init__(self, batch, c: int):
        self.batch, self.c = batch, c

    def __len__(self) -> int:
        return len(self.batch) * self.c

    @property
    def rows(self):  # only read to name an offending row
        rows = getattr(self.batch, "rows", None)
        return None if rows is None else list(rows) * self.c


def check_values(name: str, values: torch.Tensor, batch) -> torch.Tensor:
    """Refuse a wrong shape or NaN/inf, naming the first offending dataset row."""
    n = len(batch)
    if not isinstance(values, torch.Tensor) or values.shape != (n,):
        shape = getattr(values, "shape", type(values).__name__)
        raise MetricError(f"metric {name!r} must return one value per example ({n}), got {shape}")
    bad = ~torch.isfinite(values)
    if bad.any():
        i = int(bad.nonzero()[0])
        row = batch.rows[i] + 1 if getattr(batch, "rows", None) else i + 1
        raise MetricError(
            f"metric {name!r} returned {values[i].item()} for row {row} "
            f"({int(bad.sum())} non-finite value(s) in this batch)"
        )
    return values


@dataclass(frozen=True)
class Faithfulness:
    """A circuit's metric against the full model's and the empty circuit's::

        normalized = (m(C) - m(empty)) / (m(full) - m(empty))

    1 means the circuit recovers the whole behaviour, 0 none of it (NaN when full == empty).
    """

    circuit: float
    full: float
    empty: float

    @property
    def normalized(self) -> float:
        denom = self.full - self.empty
        return float("nan") if denom == 0 else (self.circuit - self.empty) / denom

    def as_dict(self) -> dict:
        return {**asdict(self), "normalized": self.normalized}
