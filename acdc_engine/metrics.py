"""Metrics: logits at the answer position (and the batch) -> one number per example.

A metric is a small named object around one function with a fixed signature::

    fn(logits: Tensor[batch, vocab], batch: Batch) -> Tensor[batch]

``higher_is_better`` says which way the behaviour goes (logit difference: up; KL to the clean
model: down). Faithfulness normalizes either kind the same way. The built-in metrics (logit
difference, probability difference, KL divergence to the clean model, negative log-likelihood,
accuracy) live in the ``acdc_builtins`` plugin and are registered through the same hook as any
plugin's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch

from .errors import MetricError

__all__ = ["Metric", "Faithfulness", "check_values"]


@dataclass(frozen=True)
class Metric:
    """A named metric. ``needs`` lists what the batch must carry ("wrong", "clean_logits")."""

    name: str
    fn: Callable[[torch.Tensor, object], torch.Tensor]
    higher_is_better: bool = True
    differentiable: bool = True
    needs: tuple[str, ...] = ()
    description: str = ""

    def __call__(self, logits: torch.Tensor, batch) -> torch.Tensor:
        return check_values(self.name, self.fn(logits, batch), batch)


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
