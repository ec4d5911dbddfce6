"""What :func:`~acdc_engine.api.discover` and :func:`~acdc_engine.api.evaluate_scores` return."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..circuit import Circuit
from ..evaluation.curves import Curve
from ..graph import Graph
from ..metrics import Faithfulness

__all__ = ["DiscoveryResult", "EvaluationResult", "degenerate_warning",
           "faithfulness_warnings"]


def degenerate_warning(full: float, empty: float) -> str | None:
    """A warning when the full model and the empty circuit score (nearly) the same: then
    normalized faithfulness divides by ~0 and can land far outside [0, 1]."""
    gap, scale = abs(full - empty), max(abs(full), abs(empty))
    if gap > 1e-3 * scale and gap > 1e-6:
        return None
    return (f"the full model ({full:.4g}) and the empty circuit ({empty:.4g}) give nearly the "
            "same metric, so normalized faithfulness, CPR and CMD are ill-defined here (they "
            "divide by the difference): the task does not exercise this model's behaviour "
            "(random weights? clean and corrupted prompts with the same answer? a metric that "
            "does not see the change?)")


FAR_OUTSIDE = 0.25
"""Normalized faithfulness below ``-FAR_OUTSIDE`` or above ``1 + FAR_OUTSIDE`` is warned."""


def faithfulness_warnings(problem, full: float, empty: float, normalized: float | None = None,
                          curve: Curve | None = None) -> list[str]:
    """Every warning about a run's normalized faithfulness (discover and evaluate call this
    once): the full model and the empty circuit nearly equal (:func:`degenerate_warning`);
    their gap within the noise of the examples (fewer than 3 standard errors of the
    per-example differences from zero, or under 0.2 of their spread:
    :meth:`~acdc_engine.evidence.uncertainty.GapNoise.too_noisy`; two more runs over the
    examples); ``normalized`` (the circuit's) or a point of ``curve`` far outside [0, 1]
    (:data:`FAR_OUTSIDE`)."""
    out = []
    if (w := degenerate_warning(full, empty)) is not None:
        out.append(w)
    elif problem is not None:
        from ..evidence.uncertainty import gap_noise

        g = gap_noise(problem)
        if g.too_noisy():
            out.append(
                f"the full model ({full:.4g}) and the empty circuit ({empty:.4g}) differ by "
                f"{full - empty:.3g}, within the noise of the {g.n} examples (standard error "
                f"{g.se:.3g}, so the gap is {g.z:.1f} standard errors from 0; the per-example "
                f"differences spread {g.sd:.3g}, {g.sd / abs(full - empty):.1f}x the gap): "
                "normalized faithfulness, CPR and CMD divide by this gap and are unreliable; "
                "the task hardly exercises this model's behaviour (prompts the model was not "
                "trained on? more examples?)")
    points = [("", normalized)] if normalized is not None else []
    if curve is not None:
        points += [(f" at the {b:g}% budget", f) for b, f in zip(curve.budgets, curve.normalized)]
    far = [(at, f) for at, f in points  # NaN: full == empty, warned above
           if f == f and not -FAR_OUTSIDE <= f <= 1 + FAR_OUTSIDE]
    if far:
        at, f = max(far, key=lambda t: abs(t[1] - 0.5))
        side = "above the full model's" if f > 1 else "beyond the empty circuit's"
        out.append(f"normalized faithfulness {f:.3f}{at} is far outside [0, 1]: the "
                   f"circuit's metric lies {side}, so the number is not a share of the "
                   "behaviour recovered (a small full-vs-empty gap, or a circuit that drops "
                   "components working against the behaviour)")
    return out


@dataclass
class _Recorded:
    """Where a result was recorded (set by the recording layer)."""

    out_dir: Path | None = None
    run_id: str | None = None  # the MLflow run id (None when not tracked)
    tracking_uri: str | None = None
    tracking_error: str | None = None  # set when the results could not all be logged

    def _where(self) -> list[str]:
        lines = []
        if self.run_id is not None:
            lines.append(f"MLflow run {self.run_id} in {self.tracking_uri}")
        if self.out_dir is not None:
            lines.append(f"written to {self.out_dir}/")
        return lines


@dataclass
class DiscoveryResult(_Recorded):
    """A discovered circuit with its scores, faithfulness and (usually) its curve.

    ``circuit`` is a :class:`~acdc_engine.circuit.Circuit`; ``circuit.nx`` is its networkx
    ``MultiDiGraph``."""

    circuit: Circuit = None
    scores: torch.Tensor = None
    faithfulness: Faithfulness = None
    params: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    curve: Curve | None = None
    ground_truth: dict | None = None  # ROC AUC against the model's ground truth, if it has one
    warnings: list[str] = field(default_factory=list)
    stability: dict | None = None  # intervals, stability and redundancy (discover stability=N)

    @property
    def graph(self) -> Graph:
        return self.circuit.graph

    def _notes(self) -> list[str]:
        """The task's notes (``TaskRows.notes``, params ``task.<key>``) as one line."""
        notes = [f"{k[5:]}: {v}" for k, v in self.params.items() if k.startswith("task.")]
        return [f"task notes: {'; '.join(notes)}"] if notes else []

    def summary(self) -> str:
        f, p = self.faithfulness, self.params
        lines = [
            f"model {p['model']} | task {p['task']} | method {p['method']} | metric "
            f"{p['metric']} | ablation {p['ablation']}",
            f"circuit: {self.circuit.summary()}",
            *self._notes(),
            f"faithfulness: {f.normalized:.3f} normalized (metric: circuit {f.circuit:.4g}, "
            f"full model {f.full:.4g}, empty circuit {f.empty:.4g})",
        ]
        if self.curve is not None:
            lines.append(f"curve: CPR {self.curve.cpr:.3f} (higher is better), "
                         f"CMD {self.curve.cmd:.3f} (lower is better)")
        if self.ground_truth is not None:
            gt = self.ground_truth
            lines.append(f"ground truth: edge ROC AUC {gt['edge_roc_auc']:.3f}, node ROC AUC "
                         f"{gt['node_roc_auc']:.3f} ({gt['gt_edges']} edges)")
        lines.append(f"time: {self.timings.get('total_s', float('nan')):.2f}s "
                     f"(scoring {self.timings.get('scoring_s', float('nan')):.2f}s)")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines + self._where())


@dataclass
class EvaluationResult(_Recorded):
    """The faithfulness curve of saved scores (:func:`~acdc_engine.api.evaluate_scores`)."""

    curve: Curve = None
    params: dict = field(default_factory=dict)
    source: str = ""
    timings: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    ground_truth: dict | None = None  # ROC AUC against a ground-truth circuit, if one was given

    def summary(self) -> str:
        p = self.params
        lines = [f"scores of {self.source}",
                 f"model {p['model']} | task {p['task']} | metric {p['metric']} | ablation "
                 f"{p['ablation']} | {p['n_examples']} examples", self.curve.table(),
                 f"time: {self.timings.get('total_s', float('nan')):.2f}s"]
        if self.ground_truth is not None:
            gt = self.ground_truth
            lines.append(f"ground truth {gt['ground_truth']}: edge ROC AUC "
                         f"{gt['edge_roc_auc']:.3f}, node ROC AUC {gt['node_roc_auc']:.3f} "
                         f"({gt['gt_edges']} edges)")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines + self._where())
