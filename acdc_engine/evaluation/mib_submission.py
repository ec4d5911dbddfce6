"""MIB's circuit-track submission folder: write it and read it back.

What MIB's circuit track takes (github.com/hannamw/MIB-circuit-track ``README.md``,
"Submitting to the MIB Leaderboard"; the readers ``run_evaluation.py`` there and
``MIB_circuit_track/circuit_loading.py`` / ``eval_submissions.py`` in
github.com/mttk/MIB-circuit-track-autoeval): one folder per task and model named
``{task}_{model}``, ``_`` in the task written ``-`` (``ioi_gpt2``, ``arc-easy_llama3``,
``arithmetic-addition_llama3``), holding either

* ``importances.json``: one score per edge (and ``in_graph`` flags), EAP-IG's
  ``Graph.to_json`` (:func:`~acdc_engine.evaluation.mib.to_mib`; the name MIB's own
  ``run_attribution.py`` writes and ``run_evaluation.py`` reads), or
* 9 circuit files, one per edge fraction of :data:`MIB_CIRCUIT_PERCENTAGES` (0.1 % ... 50 %;
  the 100 % point is the full model), each with at most ``int(p * n_edges)`` edges
  ``in_graph`` and, as the README says, no scores. MIB fixes no file names for them (no
  public reader of this kind exists; the autoeval marks it a TODO), so they are written
  ``circuit_{p}.json`` with ``p`` the fraction as MIB's ``percentages`` spells it
  (``circuit_0.001.json`` ... ``circuit_0.5.json``) and read back by that name.

MIB's short names (``MIB_circuit_track/utils.py``): tasks :data:`MIB_TASKS`, models
:data:`MIB_MODELS`. Other names are written as given (a model of your own), since the
folder is also this engine's exchange format. The ``.pt`` form is not written (it is
EAP-IG's internal tensor layout).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..circuit import prune_dead, select
from ..errors import AcdcError
from ..graph import Graph, Keep, Scores
from .mib import MIB_PERCENTAGES, MibFile, mib_counts, read_mib, to_mib

__all__ = ["MIB_CIRCUIT_PERCENTAGES", "MIB_TASKS", "MIB_MODELS", "submission_folder",
           "write_submission", "MibSubmission", "read_submission", "circuit_file"]

MIB_CIRCUIT_PERCENTAGES: tuple[float, ...] = MIB_PERCENTAGES[:-1]
"""The fractions a multi-circuit submission has one circuit for (MIB's README: 0.1 % to 50 %
of edges; the curve's 100 % point is the full model)."""

MIB_TASKS = ("ioi", "mcqa", "arithmetic_addition", "arithmetic_subtraction", "arc_easy",
             "arc_challenge")
"""MIB's task names (``TASKS_TO_HF_NAMES``); a folder writes ``_`` as ``-``."""

MIB_MODELS = ("gpt2", "qwen2.5", "gemma2", "llama3", "interpbench")
"""MIB's model names (``MODEL_NAME_TO_FULLNAME`` and ``interpbench``)."""

_CIRCUIT = re.compile(r"^circuit_(\d+(?:\.\d+)?)\.json$")


def submission_folder(out_dir: str | Path, task: str, model: str) -> Path:
    """``out_dir/{task}_{model}`` with ``_`` in the task written ``-`` (as MIB names it)."""
    for what, v in (("task", task), ("model", model)):
        if not v or "/" in v or "_" in v and what == "model":
            raise AcdcError(f"the MIB {what} name must be a plain name without '/'"
                            f"{' or _' if what == 'model' else ''}, got {v!r}")
    return Path(out_dir) / f"{task.replace('_', '-')}_{model}"


def circuit_file(p: float) -> str:
    """The file name of the circuit for fraction ``p``: ``circuit_0.001.json``."""
    return f"circuit_{float(p)!r}.json"


def _write(path: Path, data: dict) -> Path:
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_submission(out_dir: str | Path, task: str, model: str, graph: Graph, scores: Scores,
                     keep: Keep | None = None, d_model: int | None = None,
                     circuits: bool = False) -> Path:
    """Write ``scores`` as MIB's submission folder for ``task`` and ``model``, and return it.

    Default: ``importances.json`` (the scores, and the circuit ``keep`` as ``in_graph``).
    ``circuits=True``: instead one circuit file per fraction of
    :data:`MIB_CIRCUIT_PERCENTAGES`, each the top ``int(p * n_edges)`` edges by ``|score|``
    with edges off input-to-logits paths pruned (the circuits MIB's own curve of these
    scores evaluates), without scores."""
    folder = submission_folder(out_dir, task, model)
    if not circuits:
        _write(folder / "importances.json", to_mib(graph, scores, keep, d_model))
        return folder
    for p, n in zip(MIB_CIRCUIT_PERCENTAGES, mib_counts(graph.n_edges,
                                                         MIB_CIRCUIT_PERCENTAGES)):
        kept = prune_dead(graph, select(graph, scores, n_edges=n))
        data = to_mib(graph, scores, kept, d_model)
        for info in data["edges"].values():
            del info["score"]
        _write(folder / circuit_file(p), data)
    return folder


@dataclass
class MibSubmission:
    """A submission folder read back: ``importances`` (its scores file) or ``circuits``
    (fraction -> circuit file), exactly one of them."""

    folder: Path
    importances: MibFile | None = None
    circuits: dict[float, MibFile] = field(default_factory=dict)

    @property
    def graph(self) -> Graph:
        """The graph its files are of."""
        return (self.importances or next(iter(self.circuits.values()))).graph

    def keeps(self) -> dict[float, Keep]:
        """Fraction -> the circuit submitted for it."""
        return {p: f.keep for p, f in self.circuits.items()}


def read_submission(folder: str | Path, graph: Graph | None = None) -> MibSubmission:
    """Read a submission folder written by :func:`write_submission` (or by hand in MIB's
    layout): ``importances.json``, or ``circuit_{p}.json`` files, onto ``graph`` (default:
    the graph the files' ``cfg`` describes). Refuses a folder with neither, with both, or
    with circuit files of different graphs, in one line."""
    folder = Path(folder)
    if not folder.is_dir():
        raise AcdcError(f"{folder} is not a MIB submission folder (expected a directory "
                        "named TASK_MODEL)")
    scores = folder / "importances.json"
    found = {float(m[1]): f for f in sorted(folder.iterdir()) if (m := _CIRCUIT.match(f.name))}
    if scores.is_file() == bool(found):
        what = "both importances.json and circuit files" if found else "neither"
        raise AcdcError(f"{folder} holds {what}; a MIB submission folder holds "
                        "importances.json or circuit_{p}.json files, one kind")
    if scores.is_file():
        return MibSubmission(folder, importances=read_mib(scores, graph))
    circuits = {p: read_mib(f, graph) for p, f in sorted(found.items())}
    first = next(iter(circuits.values())).graph
    if any(c.graph != first for c in circuits.values()):
        raise AcdcError(f"{folder}: its circuit files describe different graphs")
    return MibSubmission(folder, circuits=circuits)
