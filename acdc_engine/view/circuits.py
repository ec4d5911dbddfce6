"""The circuit drawn on the architecture map: loaded from a run or a file, or discovered from
the page; its size chosen with a slider, with the faithfulness of that size.

A circuit comes from per-edge scores (``edge_scores.tsv`` of a run found by
:func:`acdc_engine.records.find_run`, or EAP/EAP-IG run on the session's problem) and is cut
to the top ``n`` edges by ``|score|`` (:meth:`acdc_engine.circuit.Circuit.top`); a
``circuit.json`` without a full score vector keeps its own edges. The interventions can also
be saved the other way round: the edges they leave in place, as a circuit file, or as an
MLflow run (an experiment).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..circuit import Circuit
from ..errors import AcdcError
from ..metrics import Faithfulness

if TYPE_CHECKING:
    from .session import Session

__all__ = ["CircuitView"]

MAX_DRAWN = 1500
"""At most this many edges are sent to the page (the strongest first)."""


class CircuitView:
    """``session.circuit``: the current circuit, its scores and its faithfulness."""

    def __init__(self, session: Session):
        self.s = session
        self.scores: torch.Tensor | None = None  # [n_edges] or None
        self.current: Circuit | None = None
        self.source: str | None = None
        self.faith: Faithfulness | None = None
        self._ends: tuple[float, float] | None = None  # (full, empty) metric

    # ----- where circuits come from -----------------------------------------------------------
    def load(self, ref: str, n_edges: int | None = None) -> dict:
        """Load the circuit of run ``ref`` (run id, run directory, scores file) or of a
        ``circuit.json``; an unknown reference is an error and the current circuit stays."""
        from ..records import find_run, read_scores

        g = self.s.graph
        path = Path(ref)
        if path.suffix == ".json" and path.name != "run.json" and path.is_file():
            circuit = Circuit.load(path)
            if circuit.graph.positions:  # the page draws unsplit circuits
                circuit = circuit.unsplit()
            if circuit.graph != g:
                raise AcdcError(f"{path} is a circuit of another graph "
                                f"({circuit.graph.summary()}; this model: {g.summary()})")
            scores = circuit.scores
            if scores is not None and torch.isnan(scores).any():
                scores = None
            return self._set(circuit, scores, str(path))
        run = find_run(ref)
        if run.params.get("position_split"):
            raise AcdcError(f"run {ref} is split by position; load its circuit.json (drawn "
                            "unsplit: an edge kept at any position)")
        scores = read_scores(run.scores_path, g)
        n = n_edges or _default_edges(run.record, g.n_edges)
        return self._set(Circuit.top(g, scores, n), scores, f"run {ref}")

    def discover(self, method: str = "eap", n_edges: int | None = None) -> dict:
        """Score every edge with ``method`` (eap, eap-ig) on the session's problem and draw the
        top ``n_edges`` (default: 5% of the edges)."""
        from ..scoring import attribute

        t0 = time.perf_counter()
        with self.s.busy(f"{method} on {self.s.problem.n_examples} examples"):
            scores = attribute(self.s.problem, method, progress=False)
        n = n_edges or max(1, self.s.graph.n_edges // 20)
        out = self._set(Circuit.top(self.s.graph, scores, n), scores, f"{method} (this page)")
        out["seconds"] = time.perf_counter() - t0
        return out

    def size(self, n_edges: int) -> dict:
        """Keep the top ``n_edges`` of the current scores; returns the new info."""
        if self.scores is None:
            raise AcdcError("this circuit has no score per edge, so its size is fixed; load a "
                            "run or discover one to choose the number of edges")
        n = max(0, min(int(n_edges), self.s.graph.n_edges))
        return self._set(Circuit.top(self.s.graph, self.scores, n), self.scores, self.source)

    def _set(self, circuit: Circuit, scores: torch.Tensor | None, source: str) -> dict:
        with self.s._lock, self.s.busy(f"faithfulness of {circuit.number_of_edges()} edges"):
            faith = self._faithfulness(circuit)
            self.current, self.scores, self.source, self.faith = circuit, scores, source, faith
            self.s.version += 1
            self.s.log.append(f"circuit {source}: {circuit.summary()}")
        return self.info()

    def _faithfulness(self, circuit: Circuit) -> Faithfulness:
        p = self.s.problem
        if self._ends is None:
            full, empty = p.evaluate([None, p.empty_mask()])
            self._ends = (full, empty)
        (value,) = p.evaluate([circuit.mask()])
        return Faithfulness(value, *self._ends)

    # ----- what the page draws ----------------------------------------------------------------
    def info(self) -> dict | None:
        c = self.current
        if c is None:
            return None
        return {"source": self.source, "n_edges": c.number_of_edges(),
                "n_edges_total": self.s.graph.n_edges, "n_nodes": c.number_of_nodes(),
                "has_scores": self.scores is not None,
                "faithfulness": self.faith.as_dict() if self.faith else None}

    def edges(self) -> list[dict]:
        """The kept edges (the strongest :data:`MAX_DRAWN`) with their scores."""
        c = self.current
        if c is None:
            return []
        idx = c.keep.nonzero()[:, 0]
        scores = self.scores if self.scores is not None else c.scores
        if scores is not None and len(idx) > MAX_DRAWN:
            idx = idx[torch.nan_to_num(scores[idx].abs(), nan=0).argsort(descending=True)]
            idx = idx[:MAX_DRAWN]
        out = []
        for i in idx.tolist():
            e = self.s.graph.edges[i]
            v = None if scores is None else float(scores[i])
            out.append({"name": e.name, "src": e.src.name, "dst": e.dst.name,
                        "kind": e.kind.value or "resid", "score": v})
        return out

    # ----- saving the interventions ---------------------------------------------------------
    def from_interventions(self) -> Circuit:
        """The edges the current interventions leave in place, as a circuit."""
        mask, _ = self.s.stack.plan()
        keep = self.s.graph.from_dense(mask).bool()
        return Circuit(self.s.graph, keep, None, {
            "model": self.s.model.id, "task": self.s.task, "method": "interventions",
            "interventions": "; ".join(self.s.interventions)})

    def save(self, path: str | Path) -> Path:
        """Write the interventions' circuit to ``path`` (``circuit.json``)."""
        return self.from_interventions().save(path)

    def save_experiment(self, experiment: str | None = None) -> str | None:
        """Log the interventions and their summary as an MLflow run; returns its run id."""
        from ..records import run_context

        s = self.s
        summ = s.summary
        with run_context(experiment or f"view-{s.task}", "acdc view") as run:
            run.log_params({"model": s.model.id, "task": s.task,
                            "metric": s.problem.metric.name,
                            "interventions": "; ".join(s.interventions) or "(none)"})
            run.log_metrics({"metric": summ.metric, "answer_prob": summ.prob,
                             "accuracy": summ.accuracy, "n_flipped": len(summ.flipped),
                             **({"logit_diff": summ.logit_diff}
                                if summ.logit_diff is not None else {})})
            return run.run_id


def _default_edges(record: dict, n_total: int) -> int:
    """The run's own circuit size when it recorded one, else 5% of the edges."""
    for where in (record.get("metrics", {}), record.get("params", {}), record):
        for key in ("edges", "n_edges", "circuit_edges"):
            v = where.get(key) if isinstance(where, dict) else None
            try:
                if v is not None and 0 < int(float(v)) <= n_total:
                    return int(float(v))
            except (TypeError, ValueError):
                continue
    return max(1, n_total // 20)
