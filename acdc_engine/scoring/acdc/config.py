"""What an ACDC run is told: :class:`AcdcConfig` (and :class:`Guide` for guided ACDC), and
what its ``callback`` hears after each node (:class:`NodeDone`).

One config serves plain and guided ACDC, the fast engine and the reference::

    acdc(problem, AcdcConfig(tau=0.01))                                   # plain ACDC
    acdc(problem, AcdcConfig(tau=0.01, guide=Guide(estimates)))           # guided by EAP-IG
    acdc_naive(problem, AcdcConfig(tau=0.01))                             # the reference

Settings are checked when the config is made: a bad value fails before any model work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ...errors import AcdcError

__all__ = ["AcdcConfig", "Guide", "NodeDone"]


@dataclass(frozen=True)
class NodeDone:
    """Passed to ``callback`` after each node: ``position`` nodes of ``total`` are done."""

    position: int
    total: int
    node: str
    n_tested: int
    n_kept: int


@dataclass(frozen=True, eq=False)  # holds a tensor: compared by identity
class Guide:
    """Attribution guidance for ACDC (see :mod:`.driver`, guided ACDC).

    ``estimates`` ([n_edges], e.g. EAP-IG on the pruning metric) order each node's tests by
    ascending ``|estimate|``. Edges with ``|estimate| >= keep_factor * tau`` are kept untested
    (None: test every edge); the least important edges whose estimates sum below
    ``group_fraction * tau`` are removed together when one exact test allows it.
    """

    estimates: torch.Tensor  # [n_edges]
    keep_factor: float | None = 10.0
    group_fraction: float = 0.5

    def __post_init__(self):
        if self.estimates.dim() != 1:
            raise AcdcError(f"estimates must be one value per edge, got shape "
                            f"{tuple(self.estimates.shape)}")
        if self.keep_factor is not None and not math.isfinite(self.keep_factor):
            raise AcdcError(f"keep_factor must be a finite number or None, got "
                            f"{self.keep_factor}")
        if not math.isfinite(self.group_fraction):
            raise AcdcError(f"group_fraction must be a finite number, got {self.group_fraction}")


@dataclass(frozen=True)
class AcdcConfig:
    """One ACDC run's settings.

    tau:              remove an edge when it makes the metric worse by less than this
    abs_value:        compare ``|change|`` with tau instead of the signed damage
    speculate:        at most this many candidates stacked in one forward (fast engine)
    mem_budget_mb:    memory for stacked candidates; caps ``speculate`` (fast engine)
    max_tested:       stop after this many tests made by this call (``complete=False``)
    checkpoint:       file to write the state to as the run goes and to resume from
                      (:func:`acdc`); :func:`acdc_naive` only reads it, to start from there
    checkpoint_every: nodes between checkpoints
    callback:         called with a :class:`NodeDone` after each node; raising from it
                      interrupts the run (after the checkpoint is written)
    progress:         show a progress bar
    guide:            attribution guidance (:class:`Guide`); None = plain ACDC
    """

    tau: float
    abs_value: bool = False
    speculate: int = 32
    mem_budget_mb: float = 512
    max_tested: int | None = None
    checkpoint: str | Path | None = None
    checkpoint_every: int = 10
    callback: Callable[[NodeDone], None] | None = None
    progress: bool = True
    guide: Guide | None = None

    def __post_init__(self):
        try:
            finite = math.isfinite(float(self.tau))
        except (TypeError, ValueError):
            finite = False
        if not finite:
            raise AcdcError(f"tau must be a finite number, got {self.tau}")
        if self.speculate < 1:
            raise AcdcError(f"speculate must be at least 1, got {self.speculate}")
        if self.checkpoint_every < 1:
            raise AcdcError(f"checkpoint_every must be at least 1, got {self.checkpoint_every}")
        if not self.mem_budget_mb >= 0:
            raise AcdcError(f"mem_budget_mb must be at least 0, got {self.mem_budget_mb}")
        if self.max_tested is not None and self.max_tested < 0:
            raise AcdcError(f"max_tested must be at least 0, got {self.max_tested}")

    @property
    def label(self) -> str:
        """The method's name, as progress bars and checkpoints record it."""
        return "acdc" if self.guide is None else "acdc-guided"
