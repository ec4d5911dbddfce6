"""MIB files from runs, and runs of MIB files: export a run's scores and circuit in MIB's
circuit-track layout, evaluate a MIB circuit file with MIB's CPR/CMD.

    from acdc_engine.api.mib import export_mib, evaluate_mib
    path = export_mib("RUN_ID", "submission/", task="ioi", model="gpt2")
    ev = evaluate_mib(path, model="tiny-ioi", task="ioi")
    ev.mib.cpr, ev.mib.cmd          # as MIB's evaluation computes them
    ev.engine.cpr, ev.engine.cmd    # the engine's own curve of the same scores

A task can also be a local MIB data file (``mib_data=``: its rows mapped to pairs,
:mod:`acdc_engine.evaluation.mib_data`). Formats and the two curves: docs/metrics.md.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..circuit import Circuit
from ..errors import AcdcError
from ..evaluation.curves import BUDGETS, Curve, faithfulness_curve
from ..evaluation.selection import supporting
from ..evaluation.mib import MIB_PERCENTAGES, MibCurve, MibFile, mib_circuits_curve, \
    mib_curve, read_mib, write_mib
from ..evaluation.mib_submission import MibSubmission, read_submission, write_submission
from ..graph import Graph, parse_edge
from ..metrics import Faithfulness

__all__ = ["export_mib", "evaluate_mib", "MibEvaluation", "mib_task"]


def _graph_of_names(names: list[str]) -> Graph:
    """The graph whose edges ``names`` are (an edge_scores.tsv without a circuit.json)."""
    layers = heads = 0
    mlp = False
    for n in names:
        for node in parse_edge(n)[:2]:
            if node.startswith("a"):
                lay, head = node[1:].split(".")
                layers, heads = max(layers, int(lay) + 1), max(heads, int(head) + 1)
            elif node.startswith("m"):
                layers, mlp = max(layers, int(node[1:]) + 1), True
    g = Graph.infer(len(names), layers, heads, mlp)
    if g is None:
        raise AcdcError(f"cannot tell the graph of {len(names)} scored edges")
    return g


def _d_model(model_id) -> int | None:
    """d_model of the run's model, from its config (None when it cannot be loaded)."""
    try:
        from .setup import load_model

        cfg = load_model(model_id, device="cpu").hf.config
    except Exception:
        return None
    for key in ("d_model", "hidden_size", "n_embd"):
        v = getattr(cfg, key, None)
        if isinstance(v, int):
            return v
    return None


def _higher_is_better(params: dict) -> bool:
    """Whether the run's metric goes up with the behaviour (its recorded flag, else the
    registered metric's; True when neither is known, as for logit_diff)."""
    flag = params.get("metric_higher_is_better")
    if flag is not None:
        return str(flag).lower() in ("true", "1")
    try:
        from ..plugins import registry

        return registry().metric(params["metric"]).higher_is_better
    except Exception:
        return True


def export_mib(run: str, out_dir: str | Path, *, task: str | None = None,
               model: str | None = None, d_model: int | None = None,
               uri: str | None = None, results: str | Path | None = None,
               circuits: bool = False) -> Path:
    """Write run ``run``'s edge scores and circuit (``in_graph``) as MIB's submission folder
    ``out_dir/{task}_{model}`` (returned) holding ``importances.json``, or with ``circuits``
    the 9 circuits MIB's curve of the scores evaluates
    (:func:`~acdc_engine.evaluation.mib_submission.write_submission`); ``task``/``model``
    default to the run's names (a model path becomes its last component). ``d_model`` (MIB's
    reader needs it) defaults to the run's model's, when it can be loaded. Scores get MIB's
    sign (:func:`~acdc_engine.evaluation.selection.supporting`: positive = the edge supports
    the behaviour; negated for a metric where higher is better), so MIB's signed ranking
    (``absolute=False``) reads them as it reads its own methods'."""
    from ..records import find_run, read_scores

    source = find_run(str(run), uri=uri, results=Path(results) if results else None)
    params = source.params
    circuit_path = Path(source.scores_path).parent / "circuit.json"
    keep, meta = None, dict(params)
    if circuit_path.is_file():
        circuit = Circuit.load(circuit_path)
        graph, keep = circuit.graph, circuit.keep
        meta.update(circuit.attrs)  # metric_higher_is_better, among others
    else:
        names = [ln.split("\t")[0] for ln in Path(source.scores_path).read_text().splitlines()
                 if ln.strip() and not ln.startswith("edge\t")]
        graph = _graph_of_names(names)
    if graph.positions:
        raise AcdcError(f"{source.where} splits edges by position; MIB files have none")
    scores = supporting(read_scores(source.scores_path, graph), _higher_is_better(meta))
    task = task or params.get("task")
    model = model or Path(str(params.get("model") or "")).name.replace("_", "-")
    if not task or not model:
        raise AcdcError(f"{source.where} does not name its task and model; pass task= and "
                        "model= (--task-name, --model-name)")
    if d_model is None and params.get("model"):
        d_model = _d_model(params["model"])
    return write_submission(out_dir, task, model, graph, scores, keep, d_model, circuits)


@dataclass
class MibEvaluation:
    """A MIB file evaluated: MIB's curve (``mib``), the engine's curve of the same scores
    (``engine``) and, when the file marks edges ``in_graph``, that circuit's faithfulness.
    A submission folder of circuits: ``file`` is the :class:`MibSubmission`, ``mib`` the
    curve of its circuits (no engine curve, no single circuit)."""

    file: MibFile | MibSubmission
    mib: MibCurve | None
    engine: Curve | None
    circuit: Faithfulness | None
    params: dict

    def summary(self) -> str:
        if isinstance(self.file, MibSubmission):
            lines = [f"MIB submission {self.file.folder}: {len(self.file.circuits)} circuits "
                     f"of a graph of {self.file.graph.n_edges} edges"]
        else:
            lines = [f"MIB file {self.file.source}: {int(self.file.keep.sum())} of "
                     f"{self.file.graph.n_edges} edges in_graph"]
        if self.mib is not None:
            lines.append(self.mib.table())
        if self.engine is not None:
            lines.append(f"engine curve (edges kept after pruning as x): CPR "
                         f"{self.engine.cpr:.4f}  CMD {self.engine.cmd:.4f}")
        if self.circuit is not None:
            lines.append(f"the file's circuit: normalized faithfulness "
                         f"{self.circuit.normalized:.4f}")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        source = str(self.file.folder) if isinstance(self.file, MibSubmission) else \
            self.file.source
        return {"file": source, "params": self.params,
                "mib": None if self.mib is None else self.mib.as_dict(),
                "engine": None if self.engine is None else self.engine.as_dict(),
                "circuit_faithfulness": None if self.circuit is None else
                self.circuit.as_dict()}


def mib_task(mib_data: str | Path, counterfactual: str | None = None,
             out_dir: str | Path | None = None) -> str:
    """A pairs file (a task path) made from a local MIB data file."""
    from ..evaluation.mib_data import write_mib_pairs

    out_dir = Path(out_dir or tempfile.mkdtemp(prefix="acdc-mib-"))
    return str(write_mib_pairs(mib_data, out_dir / f"{Path(mib_data).stem}.jsonl",
                               counterfactual))


def evaluate_mib(file: str | Path, model: str, task: str | None = None, *,
                 mib_data: str | Path | None = None, counterfactual: str | None = None,
                 absolute: bool = True, progress: bool = False, log_scale: bool = False,
                 **problem) -> MibEvaluation:
    """Evaluate the MIB circuit file ``file`` on ``model`` and ``task`` (or the MIB data file
    ``mib_data``): MIB's CPR/CMD and the engine's curve of its scores, and its ``in_graph``
    circuit's faithfulness (MIB's curve and the circuit in one pass over the data, the engine's
    curve in another). ``file`` may be a submission folder (``TASK_MODEL/``): its
    ``importances.json`` as a file, or its circuit files' curve. ``log_scale``: MIB's areas
    over ``log p`` (its leaderboard's setting). ``problem`` goes to
    :func:`~acdc_engine.api.setup.build_problem` (``metric``, ``ablation``, ``n_examples``,
    ``batch_size``, ``seed``) plus ``device``/``dtype``."""
    from .setup import build_problem, load_model, load_task

    if (task is None) == (mib_data is None):
        raise AcdcError("give exactly one of a task and a MIB data file")
    # a bad file fails before the model is loaded
    if Path(file).is_dir():
        sub = read_submission(file)
        mib = sub if sub.importances is None else sub.importances
    else:
        mib = read_mib(file)
    task_ref = mib_task(mib_data, counterfactual) if mib_data is not None else task
    task_obj = load_task(task_ref)
    device, dtype = problem.pop("device", None), problem.pop("dtype", None)
    lm = load_model(model, device=device, dtype=dtype)
    prob, _ = build_problem(lm, task_obj, **problem)
    if prob.graph != mib.graph:
        raise AcdcError(f"{file} is a circuit of a graph with {mib.graph.n_edges} edges; "
                        f"model {model!r} has {prob.graph.n_edges}")
    params = {"model": lm.id, "task": task_obj.name, "metric": prob.metric.name,
              "ablation": prob.ablation.kind, "n_examples": prob.n_examples,
              "absolute": absolute, "log_scale": log_scale,
              "mib_data": None if mib_data is None else str(mib_data)}
    if isinstance(mib, MibSubmission):
        curve, _ = mib_circuits_curve(prob, mib.keeps(), progress=progress, log_scale=log_scale)
        return MibEvaluation(mib, curve, None, None, params)
    masks = [prob.graph.mask_from_edges(mib.keep)] if mib.keep.any() else []
    curve = engine = None
    if mib.has_scores:
        curve, extra = mib_curve(prob, mib.scores, MIB_PERCENTAGES, absolute, masks, progress,
                                 log_scale)
        engine, _, _ = faithfulness_curve(prob, mib.scores, BUDGETS, progress=progress)
    else:
        extra = prob.evaluate([*masks]) if masks else []
    circuit = None
    if masks:
        full = curve.full if curve else prob.evaluate([None])[0]
        empty = curve.empty if curve else prob.evaluate([prob.empty_mask()])[0]
        circuit = Faithfulness(extra[0], full, empty)
    return MibEvaluation(mib, curve, engine, circuit, params)


def write_mib_circuit(path: str | Path, circuit: Circuit, d_model: int | None = None) -> Path:
    """A :class:`Circuit` (its scores, NaN where it has none) as a MIB file."""
    import torch

    scores = circuit.scores if circuit.scores is not None else \
        torch.full((circuit.graph.n_edges,), float("nan"))
    return write_mib(path, circuit.graph, scores, circuit.keep, d_model)
