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

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..circuit import Circuit
from ..errors import AcdcError
from ..metrics import Faithfulness
from .paths import OPEN, PathGuard

if TYPE_CHECKING:
    from .session import Session

__all__ = ["CircuitView"]

MAX_DRAWN = 1500
"""At most this many edges are sent to the page (the strongest first)."""
DEFAULT_SHARE = 20
"""A circuit drawn with no size asked for or recorded keeps 1/20 (5%) of the edges."""


def default_size(n_total: int) -> int:
    """The viewer's default circuit size: :data:`DEFAULT_SHARE` of ``n_total`` edges, at
    least one."""
    return max(1, n_total // DEFAULT_SHARE)


class CircuitView:
    """``session.circuit``: the current circuit, its scores and its faithfulness."""

    def __init__(self, session: Session):
        self.s = session
        self.scores: torch.Tensor | None = None  # [n_edges] or None
        self.current: Circuit | None = None
        self.source: str | None = None
        self.faith: Faithfulness | None = None
        self._ends: tuple[float, float] | None = None  # (full, empty) metric
        self.note: str | None = None
        """Where the shown faithfulness differs from the one the run recorded, and why."""

    # ----- where circuits come from -----------------------------------------------------------
    def load(self, ref: str, n_edges: int | None = None, *, confined: bool = False) -> dict:
        """Show the circuit of ``ref``: a run id, a run directory (or its run.json), a scores
        file or a ``circuit.json``. A run's saved circuit is shown as saved (its circuit.json:
        the same edges, hence the same faithfulness on the same examples); only a run without
        one, or a scores file, is cut to the top ``n`` edges by ``|score|`` (``n``: the run's
        recorded size). With ``confined`` (the console: text from the page) paths must lie in
        the folders :mod:`.paths` allows; an unknown or refused reference is an error and the
        current circuit stays."""
        ref = str(ref).strip()
        if not ref:
            raise AcdcError("show circuit needs a run id, a run directory, a scores file or a "
                            "circuit.json")
        guard = self.s.paths if confined else OPEN
        where = self._locate(ref, guard)
        if isinstance(where, tuple):  # an MLflow run: (directory of its downloads, record)
            return self._load_run(ref, *where, n_edges, OPEN, trusted=True)
        if where.is_dir():
            return self._load_run(ref, where, None, n_edges, guard)
        if where.name == "run.json":
            return self._load_run(ref, where.parent, None, n_edges, guard)
        if where.suffix == ".json":
            return self._load_circuit_file(ref, where, n_edges)
        return self._load_scores_file(ref, where, n_edges, guard)

    def _locate(self, ref: str, guard: PathGuard):
        """The real path ``ref`` names (a file or a run directory) inside the folders ``guard``
        allows, or for an MLflow run id ``(download directory, run.json record)``."""
        from ..records.runs import _RUN_ID, find_run
        p = Path(ref).expanduser()
        bare = guard.is_run_id(ref)
        outside = False
        for i, c in enumerate([p] if p.is_absolute() else [Path.cwd() / p, guard.results() / p]):
            real = Path(os.path.realpath(c))
            if not guard.allowed(real):
                # a bare name missing from the working directory is looked up as a run id
                outside |= p.is_absolute() or not bare or (i == 1 and os.path.lexists(c))
                continue
            if real.exists():
                return real
        if outside:
            guard.resolve(ref)  # raises: outside the allowed folders (nothing was opened)
        if bare:
            for d in sorted(guard.results().glob(f"*/{ref}")):
                if d.is_dir():
                    return guard.check(d)
            if _RUN_ID.match(ref) and not os.path.lexists(ref):
                run = find_run(ref, results=guard.results())
                return Path(run.scores_path).parent, run.record
        raise AcdcError(f"no run {ref!r}: not a circuit.json, a scores file, a run directory, "
                        f"or a run id under {guard.results()} or in the MLflow store")

    def _load_circuit_file(self, ref: str, path: Path, n_edges: int | None) -> dict:
        circuit = self._read_circuit(path)
        scores = circuit.scores
        if scores is not None and torch.isnan(scores).any():
            scores = None
        if n_edges is not None and scores is not None:
            circuit = Circuit.top(self.s.graph, scores, n_edges)
        return self._set(circuit, scores, ref)

    def _read_circuit(self, path: Path) -> Circuit:
        g = self.s.graph
        circuit = Circuit.load(path)
        if circuit.graph.positions:  # the page draws unsplit circuits
            circuit = circuit.unsplit()
        if circuit.graph != g:
            raise AcdcError(f"{path} is a circuit of another graph "
                            f"({circuit.graph.summary()}; this model: {g.summary()})")
        return circuit

    def _load_scores_file(self, ref: str, path: Path, n_edges: int | None,
                          guard: PathGuard) -> dict:
        from ..records import read_scores

        record = self._record(path.parent / "run.json", guard)
        if _split(record):
            raise AcdcError(f"{ref} holds scores split by position; show the run's "
                            "circuit.json (drawn unsplit: an edge kept at any position)")
        scores = read_scores(path, self.s.graph)
        n = n_edges or _default_edges(record, self.s.graph.n_edges)
        return self._set(Circuit.top(self.s.graph, scores, n), scores, ref, record,
                         f"the top {n} edges by |score|, dead ends pruned")

    def _record(self, path: Path, guard: PathGuard) -> dict:
        if not path.exists():
            return {}
        path = guard.check(path)
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as e:  # json's messages never quote the file
            raise AcdcError(f"cannot read {path}: {type(e).__name__}: "
                            f"{getattr(e, 'strerror', None) or e}") from None
        if not isinstance(record, dict):
            raise AcdcError(f"{path} is not a run record (expected a JSON object)")
        return record

    def _load_run(self, ref: str, d: Path, record: dict | None, n_edges: int | None,
                  guard: PathGuard, trusted: bool = False) -> dict:
        from ..records import read_scores

        g = self.s.graph
        if record is None:
            record = self._record(d / "run.json", guard)
        cpath, spath = d / "circuit.json", d / "edge_scores.tsv"
        if not cpath.exists() and trusted and record.get("run_id"):
            cpath = _download(record, "circuit.json", d) or cpath
        cpath = guard.check(cpath) if cpath.exists() else cpath
        spath = guard.check(spath) if spath.exists() else spath
        scores = None
        if spath.exists() and not _split(record):
            scores = read_scores(spath, g)
        if cpath.exists():
            circuit = self._read_circuit(cpath)
            if scores is None and circuit.scores is not None \
                    and not torch.isnan(circuit.scores).any():
                scores = circuit.scores
            source = f"run {ref}"
            if n_edges is not None and scores is not None:
                circuit = Circuit.top(g, scores, n_edges)
            return self._set(circuit, scores, source, record)
        if scores is None:
            what = "split by position, without a circuit.json" if _split(record) and \
                spath.exists() else "no circuit.json and no edge_scores.tsv"
            raise AcdcError(f"run {ref} has {what} in {d}")
        n = n_edges or _default_edges(record, g.n_edges)
        return self._set(Circuit.top(g, scores, n), scores, f"run {ref}", record,
                         f"the top {n} edges by |score|, dead ends pruned: the run saved no "
                         "circuit.json")

    def discover(self, method: str = "eap", n_edges: int | None = None) -> dict:
        """Score every edge with ``method`` (eap, eap-ig) on the session's problem and draw the
        top ``n_edges`` (default: :func:`default_size`, 5% of the edges)."""
        from ..scoring import attribute

        t0 = time.perf_counter()
        with self.s.busy(f"{method} on {self.s.problem.n_examples} examples"):
            scores = attribute(self.s.problem, method, progress=False)
        n = n_edges or default_size(self.s.graph.n_edges)
        out = self._set(Circuit.top(self.s.graph, scores, n), scores, f"{method} (this page)")
        out["seconds"] = time.perf_counter() - t0
        return out

    def size(self, n_edges: int) -> dict:
        """Keep the top ``n_edges`` of the current scores; returns the new info."""
        if self.scores is None:
            raise AcdcError("this circuit has no score per edge, so its size is fixed; load a "
                            "run or discover one to choose the number of edges")
        n = max(0, min(int(n_edges), self.s.graph.n_edges))
        self.note = None
        return self._set(Circuit.top(self.s.graph, self.scores, n), self.scores, self.source)

    def _set(self, circuit: Circuit, scores: torch.Tensor | None, source: str,
             record: dict | None = None, how: str | None = None) -> dict:
        with self.s.changing(f"circuit {source}: {circuit.summary()}", model=False), \
                self.s.busy(f"faithfulness of {circuit.number_of_edges()} edges"):
            faith = self._faithfulness(circuit)
            self.current, self.scores, self.source, self.faith = circuit, scores, source, faith
            notes = [how, _recorded_note(self.s, record, faith) if record else None]
            self.note = "; ".join(n for n in notes if n) or None
        return self.info()

    def forget(self) -> None:
        """Forget the full and empty circuits' metric (the model changed)."""
        self._ends = None

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
                "faithfulness": self.faith.as_dict() if self.faith else None,
                "note": self.note}

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

    def save(self, path: str | Path, *, confined: bool = False) -> Path:
        """Write the interventions' circuit to ``path``, a ``.json`` file (with ``confined``,
        the console's case: inside the folders :mod:`.paths` allows)."""
        target = (self.s.paths if confined else OPEN).resolve(str(path), "write")
        if target.suffix != ".json" or target.name == "run.json":
            raise AcdcError(f"save the circuit as a .json file other than run.json, got "
                            f"{str(path)!r}")
        if target.is_dir():
            raise AcdcError(f"{str(path)!r} is a folder; name a .json file")
        return self.from_interventions().save(target)

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


def _split(record: dict) -> bool:
    return bool((record.get("params") or {}).get("position_split"))


def _download(record: dict, name: str, d: Path) -> Path | None:
    """``name`` of the MLflow run ``record`` describes, downloaded into ``d`` (None if none)."""
    from ..records import store

    try:
        c = store.client(record.get("tracking_uri") or store.resolve_uri(None))
        return Path(c.download_artifacts(record["run_id"], name, str(d)))
    except Exception:  # noqa: BLE001  (no such artifact: the scores are shown instead)
        return None


_SAME = (("task", lambda s: s.task), ("metric", lambda s: s.problem.metric.name),
         ("ablation", lambda s: s.problem.ablation.kind),
         ("n_examples", lambda s: s.problem.n_examples))


def _recorded_note(s: Session, record: dict, faith: Faithfulness) -> str | None:
    """None when the faithfulness shown is the one the run recorded (within 1e-3), else why
    they differ: the session's task, metric, ablation or examples are not the run's."""
    rec = (record.get("faithfulness") or {}).get("normalized")
    if rec is None:
        return None
    params = record.get("params") or {}
    differ = [f"{k} {params[k]} (here {get(s)})" for k, get in _SAME
              if params.get(k) not in (None, "") and str(params[k]) != str(get(s))]
    if not differ and abs(rec - faith.normalized) <= 1e-3:
        return None
    why = ("the run used " + ", ".join(differ)) if differ else \
        "its examples or model differ from this session's"
    return f"the run recorded faithfulness {rec:.3f}: {why}"


def _default_edges(record: dict, n_total: int) -> int:
    """The run's own circuit size when it recorded one, else :func:`default_size`."""
    for where in (record.get("metrics", {}), record.get("params", {}), record):
        for key in ("edges", "n_edges", "circuit_edges"):
            v = where.get(key) if isinstance(where, dict) else None
            try:
                if v is not None and 0 < int(float(v)) <= n_total:
                    return int(float(v))
            except (TypeError, ValueError):
                continue
    return default_size(n_total)
