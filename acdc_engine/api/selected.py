"""A method whose output is the selected circuit: one method or an ensemble, then a selection.

:class:`SelectedMethod` is how ``discover`` runs the selections of
:mod:`acdc_engine.evaluation.selection` that the pipeline does not make itself (ILP,
positive-first, bootstrap) and ensembles of several methods: it scores with every member
(through :func:`~acdc_engine.api.pipeline.default_settings`, as the pipeline would), combines
their scores, and picks the circuit. It lives in the API layer because it runs methods and
reports the bootstrap's stability with the evidence tools.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..circuit import prune_dead, select
from ..evaluation.selection import (consistent_edges, edge_frequency, ensemble_scores,
                                    ilp_select, positive_first, resample, supporting)
from ..evidence.uncertainty import Stability
from ..graph import Graph, Keep, Scores
from ..scoring.base import MethodOutput
from .pipeline import default_settings

__all__ = ["Member", "SelectedMethod"]


def _stability(graph: Graph, keep: Keep, keeps: list[Keep]):
    """The resamples' circuits against the chosen one, as the evidence tools report
    stability (:class:`~acdc_engine.evidence.uncertainty.Stability`: Jaccard, dropped edges,
    sentences)."""
    def names(k: Keep) -> list[str]:
        return sorted(graph.edges[i].name for i in k.nonzero()[:, 0].tolist())

    return Stability(names(keep), [names(k) for k in keeps],
                     [f"resample {i + 1}" for i in range(len(keeps))], "bootstrap resamples")



@dataclass
class Member:
    """One method of an ensemble (or the only method): the registered method and its
    settings object."""

    method: object
    settings: object
    given: dict = field(default_factory=dict)  # the settings the user named (not defaulted)


@dataclass
class SelectedMethod:
    """Score with ``members`` (one method, or an ensemble combined by ``config.ensemble``
    after ``config.normalisation``), then select by ``selection``; ``run`` returns a
    :class:`~acdc_engine.scoring.base.MethodOutput` whose ``keep`` is the selected circuit
    (None for topk/threshold/target, which the pipeline selects as before).

    ``config`` is a :class:`~acdc_engine.api.config.DiscoverConfig` (or any object with its
    fields): ``n_edges``/``threshold`` size the circuit; ``bootstrap``/``min_frequency``/
    ``seed`` drive the bootstrap selection; ``ilp_time_limit`` bounds the ILP. After a
    bootstrap selection, ``frequency`` holds each edge's and ``stability`` the resamples'
    circuits."""

    members: list[Member]
    selection: str
    config: object
    info: dict = field(default_factory=dict, init=False)
    frequency: torch.Tensor | None = field(default=None, init=False)
    stability: object = field(default=None, init=False)

    @property
    def name(self) -> str:
        return ",".join(m.method.name for m in self.members)

    def scores(self, problem, progress: bool = False) -> tuple[Scores, Keep | None, dict]:
        """The (ensembled) scores, the single method's own circuit (None for an ensemble),
        and the info of the run(s)."""
        outs, info = [], {}
        for m in self.members:
            settings, auto = default_settings(problem, m.settings, m.given)
            out = m.method.run(problem, settings, progress)
            outs.append(out)
            prefix = "" if len(self.members) == 1 else f"{m.method.name}."
            info.update({f"{prefix}{k}": v for k, v in {**auto, **out.info}.items()})
        if len(outs) == 1:
            return outs[0].scores.detach().float().cpu(), outs[0].keep, info
        c = self.config
        s = ensemble_scores([o.scores for o in outs], c.ensemble, c.normalisation)
        return s, None, info

    def choose(self, problem, scores: Scores, progress: bool = False) -> Keep | None:
        """The circuit the selection picks from ``scores`` (None: left to the pipeline)."""
        g, c = problem.graph, self.config
        if self.selection == "ilp":
            return ilp_select(g, scores, c.n_edges, c.ilp_time_limit, self.info)
        if self.selection == "positive":
            if len(self.members) == 1:  # an ensemble's scores have no sign
                scores = supporting(scores, problem.metric.higher_is_better)
            return positive_first(g, scores, c.n_edges)
        if self.selection != "bootstrap":
            return None
        keeps = []
        for i in range(c.bootstrap):
            s, _, _ = self.scores(resample(problem, c.seed + i), False)
            keeps.append(prune_dead(g, select(g, s, n_edges=c.n_edges, threshold=c.threshold)))
        freq = edge_frequency(keeps)
        self.info.update(bootstrap_resamples=c.bootstrap, min_frequency=c.min_frequency,
                         bootstrap_edges_always=int((freq >= 1 - 1e-9).sum()),
                         bootstrap_edges_ever=int((freq > 0).sum()))
        self.frequency = freq
        keep = prune_dead(g, consistent_edges(keeps, c.min_frequency))
        self.stability = _stability(g, keep, keeps)
        return keep

    def run(self, problem, settings=None, progress: bool = False):
        scores, own, info = self.scores(problem, progress)
        keep = self.choose(problem, scores, progress)
        if keep is None and self.selection == "target":
            keep = own  # a method that picks its own circuit keeps doing so
        return MethodOutput(scores, keep, {**info, **self.info})
