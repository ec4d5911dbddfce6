"""Settings of a run as two small dataclasses: what to compute and where it is recorded.

    discover(task="ioi", method="eap-ig", n_edges=60)                      # keywords, or
    discover(task="ioi", config=DiscoverConfig(n_edges=60), record=RecordConfig(track=False))

Keyword options are the fields of either dataclass (:func:`split_options` routes them); an
unknown keyword is a TypeError naming the known ones. Every option is checked when the config
is built (:meth:`DiscoverConfig.check`), before any model is loaded.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AcdcError
from ..evaluation.curves import BUDGETS

__all__ = ["DiscoverConfig", "RecordConfig", "split_options"]


@dataclass
class DiscoverConfig:
    """What to compute. ``metric``/``ablation``/``n_examples`` default to the task's.

    Selection: ``n_edges`` (top-n by |score|), ``threshold`` (|score| >= t), or neither: the
    smallest budget on the ``budgets`` grid reaching ``target`` normalized faithfulness.
    ``selection`` names another rule (:mod:`acdc_engine.evaluation.selection`): ``ilp``
    (connected circuit of at most ``n_edges`` edges by integer programming), ``positive``
    (positive scores first), ``bootstrap`` (edges selected in at least ``min_frequency`` of
    ``bootstrap`` resamples of the examples); None picks topk/threshold/target as above.
    ``ensemble``/``normalisation`` combine the scores of several methods (``method=["eap",
    "eap-ig"]``). ``settings`` are the method's options (``{"ig_steps": 5}``, ``{"tau": 0.01}``).
    ``level="node"`` chooses whole heads and MLPs instead of edges
    (:mod:`acdc_engine.evaluation.levels`): ``n_nodes`` (top-n nodes), ``threshold`` (on node
    scores), or neither (the target search over node budgets)."""

    metric: str | None = None
    ablation: str | None = None
    n_edges: int | None = None
    threshold: float | None = None
    target: float = 0.8
    n_examples: int | None = None
    batch_size: int = 32
    seed: int = 0
    settings: dict = field(default_factory=dict)
    budgets: tuple = BUDGETS
    curve: bool = True
    device: str | None = None
    dtype: str | None = None
    revision: str | None = None
    threads: int | None = None
    stability: int = 0
    positions: str | None = None
    selection: str | None = None
    ensemble: str = "mean"
    normalisation: str = "max"
    bootstrap: int = 20
    min_frequency: float = 0.5
    ilp_time_limit: float | None = 60.0
    level: str = "edge"
    n_nodes: int | None = None

    @property
    def selection_used(self) -> str:
        """The selection rule: :attr:`selection`, or topk/threshold/target from the sizes."""
        from ..evaluation.levels import check_level
        from ..evaluation.selection import check_selection

        at_nodes = check_level(self.level, self.selection, self.n_edges, self.n_nodes,
                               self.threshold)
        if at_nodes:  # the ensemble options still checked
            check_selection(None, None, None, self.ensemble, self.normalisation)
            return at_nodes

        return check_selection(self.selection, self.n_edges, self.threshold, self.ensemble,
                               self.normalisation)

    @property
    def default_search(self) -> bool:
        """Neither n_edges (n_nodes) nor threshold: the target search over the budget grid."""
        return self.n_edges is None and self.threshold is None and self.n_nodes is None

    def check(self) -> DiscoverConfig:
        """Refuse nonsense before any work: returns self."""
        if self.n_edges is not None and self.threshold is not None:
            raise AcdcError("give at most one of n_edges and threshold")
        self.selection_used  # noqa: B018  (a bad selection or a missing size fails here)
        if not isinstance(self.bootstrap, int) or self.bootstrap < 1:
            raise AcdcError(f"bootstrap must be a number of resamples >= 1, got "
                            f"{self.bootstrap!r}")
        if not (math.isfinite(float(self.min_frequency)) and 0 < self.min_frequency <= 1):
            raise AcdcError(f"min_frequency must be in (0, 1], got {self.min_frequency!r}")
        if self.ilp_time_limit is not None and not (math.isfinite(float(self.ilp_time_limit))
                                                    and self.ilp_time_limit > 0):
            raise AcdcError(f"the ILP time limit must be a positive number of seconds, got "
                            f"{self.ilp_time_limit!r}")
        if self.n_edges is not None and (not isinstance(self.n_edges, int) or self.n_edges < 0):
            raise AcdcError(f"the number of edges must be a whole number >= 0, got "
                            f"{self.n_edges!r}")
        if self.threshold is not None and not math.isfinite(float(self.threshold)):
            raise AcdcError(f"the threshold must be a finite number, got {self.threshold!r}")
        if not (math.isfinite(float(self.target)) and 0 < float(self.target) <= 1):
            raise AcdcError(f"the target faithfulness must be in (0, 1], got {self.target!r}")
        if self.n_examples is not None and self.n_examples < 1:
            raise AcdcError(f"the number of examples must be at least 1, got {self.n_examples}")
        if self.batch_size < 1:
            raise AcdcError(f"the batch size must be at least 1, got {self.batch_size}")
        if self.positions and self.stability:
            raise AcdcError("stability does not take position-aware edges yet; run it without "
                            "--positions")
        if self.stability < 0:
            raise AcdcError(f"stability must be a number of subsamples >= 0, got "
                            f"{self.stability}")
        if self.threads is not None and self.threads < 1:
            raise AcdcError(f"threads must be at least 1, got {self.threads}")
        if not self.budgets or any(not 0 < float(b) <= 100 for b in self.budgets):
            raise AcdcError(f"budgets must be percentages in (0, 100], got {self.budgets!r}")
        return self


@dataclass
class RecordConfig:
    """Where a run goes. ``out`` is the run directory; without it, ``results`` is a results
    root and the run goes to ``results/<experiment>/<run-id>/``; with neither nothing is kept
    on disk (a tracked run logs its files from a temporary directory). ``track`` logs an MLflow
    run to ``tracking_uri`` (default ``$MLFLOW_TRACKING_URI`` or ``sqlite:///results/mlflow.db``)
    in ``experiment`` (default: the task's name); ``nested`` makes it a child of the active run.
    ``render`` draws the circuit and curve pictures; ``progress`` shows progress bars.
    ``overwrite`` lets a run replace the run already in ``out`` (without it, an ``out`` that
    holds a run.json is refused, so a second run cannot silently replace the first)."""

    out: str | Path | None = None
    results: str | Path | None = None
    track: bool = True
    tracking_uri: str | None = None
    experiment: str | None = None
    nested: bool = False
    render: bool = True
    progress: bool = True
    overwrite: bool = False


def split_options(options: dict, config, record, config_cls=DiscoverConfig):
    """``(config, record)`` with the keyword ``options`` applied to copies of them."""
    config = dataclasses.replace(config) if config is not None else config_cls()
    record = dataclasses.replace(record) if record is not None else RecordConfig()
    cfields = {f.name for f in dataclasses.fields(config)}
    rfields = {f.name for f in dataclasses.fields(record)}
    unknown = sorted(set(options) - cfields - rfields)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; options are {sorted(cfields | rfields)}")
    for k, v in options.items():
        setattr(config if k in cfields else record, k, v)
    if config.settings is None:
        config.settings = {}
    return config, record
