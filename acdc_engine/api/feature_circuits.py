"""The task-level feature circuit as a recorded run: ``acdc features circuit`` in Python.

    r = feature_circuit_run("gpt2-ioi-bpe", "ioi-names", nodes=40, held_out=0.25)
    r.circuit            # FeatureCircuit (networkx .nx, circuit.json)
    r.held_out           # Faithfulness on the held-out pairs (.normalized)
    r.curve, r.completeness   # node-budget curves on the held-out pairs

The task's pairs are split: node and edge scores come from the first part
(:func:`acdc_engine.features.task_circuit.feature_circuit`), the faithfulness the run reports
from the held-out part (``held_out``, a fraction; the training part's is reported beside it).
Recorded like a discovery (:func:`~acdc_engine.api.recording.recorded`): params, metrics
(faithfulness, held-out faithfulness, sizes, CPR/CMD, time), ``circuit.json``, the curves
(``curve.tsv``/``curve.png``, ``completeness.tsv``), ``node_scores.tsv`` and ``report.html``
(the run on one page, as a component run's report), one MLflow run.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

from ..errors import AcdcError
from ..evaluation.curves import BUDGETS, Curve
from ..metrics import Faithfulness
from .config import RecordConfig

__all__ = ["FeatureCircuitConfig", "FeatureCircuitResult", "feature_circuit_run",
           "resolve_transcoders"]


@dataclass
class FeatureCircuitConfig:
    """How a feature circuit is found: exactly one of ``nodes`` (a budget) or ``threshold``
    (on ``|score|``), default 40 nodes; ``steps`` of integrated gradients; ``held_out``
    fraction of the pairs; ``source`` of removed nodes (corrupted, zero, mean; default the
    task's ablation); nodes ``per_position``; the task's ``metric`` (default its own),
    ``n_examples``, ``batch_size``, ``seed``, ``device``, curve ``budgets`` (% of nodes)."""

    nodes: int | None = None
    threshold: float | None = None
    steps: int = 10
    held_out: float = 0.25
    source: str | None = None
    per_position: bool = False
    metric: str | None = None
    n_examples: int | None = None
    batch_size: int = 16
    seed: int = 0
    device: str | None = None
    budgets: tuple = BUDGETS

    def check(self) -> FeatureCircuitConfig:
        """Refuse contradictory or impossible settings (one line each)."""
        if self.nodes is not None and self.threshold is not None:
            raise AcdcError("choose the feature circuit by exactly one of nodes or threshold")
        if self.nodes is None and self.threshold is None:
            self.nodes = 40
        if self.steps < 1:
            raise AcdcError(f"integrated gradients need at least 1 step, got {self.steps}")
        if not 0 < self.held_out < 1:
            raise AcdcError(f"the held-out fraction must be between 0 and 1, got "
                            f"{self.held_out}")
        return self


@dataclass
class FeatureCircuitResult:
    """A feature circuit run: the ``circuit``, its ``faithfulness`` on the pairs it was
    scored on and on the ``held_out`` ones, the held-out ``curve`` and ``completeness``
    curve, ``params``, ``timings``; where it was written and logged."""

    circuit: object
    faithfulness: Faithfulness
    held_out: Faithfulness
    curve: Curve
    completeness: Curve
    params: dict
    timings: dict = field(default_factory=dict)
    out_dir: object = None
    run_id: str | None = None
    tracking_uri: str | None = None
    tracking_error: str | None = None

    def summary(self) -> str:
        """A few readable lines."""
        return (f"{self.circuit.summary()}\nfaithfulness {self.faithfulness.normalized:.3f} "
                f"on the scored pairs, {self.held_out.normalized:.3f} held out "
                f"(metric {self.held_out.circuit:.4g}; full {self.held_out.full:.4g}, empty "
                f"{self.held_out.empty:.4g})\nheld-out curve: CPR {self.curve.cpr:.3f}, CMD "
                f"{self.curve.cmd:.3f}")


def resolve_transcoders(transcoders, model):
    """Transcoders from an object, a path or cached hub id (engine file, SAELens or
    circuit-tracer folder), or None: the model's shipped ones."""
    from .. import features

    if transcoders is None:
        shipped = getattr(features, "shipped_transcoders", None)
        if shipped is None:
            raise AcdcError(f"no transcoders given and none are shipped for {model.id!r}: "
                            "pass --transcoders PATH")
        return shipped(model)
    if isinstance(transcoders, features.Transcoders):
        return transcoders
    loader = getattr(features, "load_transcoders", None) or features.load_any
    out = loader(transcoders)
    if not isinstance(out, features.Transcoders):
        raise AcdcError(f"'{transcoders}' holds a {type(out).__name__}, not transcoders (a "
                        "TranscoderSet or cross-layer transcoder)")
    return out


def _write_scores(path, names, vals) -> None:
    order = vals.abs().argsort(descending=True).tolist()
    lines = ["node\tscore"] + [f"{names[i]}\t{float(vals[i]):.6g}" for i in order
                               if float(vals[i]) != 0.0]
    path.write_text("\n".join(lines) + "\n")


def feature_circuit_run(model, task, transcoders=None, config: FeatureCircuitConfig | None = None,
                        record: RecordConfig | None = None, **options) -> FeatureCircuitResult:
    """Find, evaluate and record the sparse feature circuit of ``task`` on ``model`` with
    ``transcoders`` (see the module docstring). ``options``: fields of FeatureCircuitConfig or
    RecordConfig."""
    from ..features.splice import check_transcoders
    from ..features.task_circuit import SOURCES, feature_circuit, score_nodes
    from ..features.task_eval import feature_curves, node_faithfulness, split_problem
    from ..records import results_dir
    from .recording import recorded, version_params
    from .setup import build_problem, load_model, load_task

    cfg, rc = _split(options, config, record)
    cfg.check()
    if rc.results is None and rc.out is None:
        rc.results = results_dir()
    t0 = time.perf_counter()
    tk = load_task(task)
    lm = load_model(model or tk.model, device=cfg.device)
    tc = resolve_transcoders(transcoders, lm)
    check_transcoders(lm.adapter, tc, lm.id, f"transcoders '{transcoders or 'shipped'}'")
    tc = tc.to(lm.device)
    problem, data = build_problem(lm, tk, metric=cfg.metric, n_examples=cfg.n_examples,
                                  batch_size=cfg.batch_size, seed=cfg.seed)
    source = cfg.source or (problem.ablation.kind if problem.ablation.kind in SOURCES
                            else "corrupted")
    params = {"model": lm.id, "task": tk.name, "transcoders": str(transcoders or "shipped"),
              "metric": problem.metric.name, "ablation": source, "nodes": cfg.nodes,
              "threshold": cfg.threshold, "ig_steps": cfg.steps, "held_out": cfg.held_out,
              "per_position": cfg.per_position, "n_examples": problem.n_examples,
              "batch_size": cfg.batch_size, "seed": cfg.seed, "device": str(lm.device)}
    load_s = time.perf_counter() - t0

    def work(rec) -> FeatureCircuitResult:
        rec.log_params({**params, **version_params()})
        train, held = split_problem(problem, cfg.held_out, cfg.seed)
        t1 = time.perf_counter()
        scores = score_nodes(train, tc, cfg.steps, source, cfg.per_position)
        circuit = feature_circuit(train, tc, nodes=cfg.nodes, threshold=cfg.threshold,
                                  scores=scores)
        t2 = time.perf_counter()
        faith = node_faithfulness(train, tc, circuit.nodes, source, cfg.per_position)
        held_f = node_faithfulness(held, tc, circuit.nodes, source, cfg.per_position)
        curve, complete = feature_curves(held, tc, scores, cfg.budgets)
        t3 = time.perf_counter()
        circuit.attrs.update(task=tk.name, faithfulness=faith.normalized,
                             faithfulness_held_out=held_f.normalized,
                             n_train=train.n_examples, n_held_out=held.n_examples,
                             transcoders=params["transcoders"], run_id=rec.run_id or "")
        timings = {"load_s": load_s, "scoring_s": t2 - t1, "evaluation_s": t3 - t2,
                   "total_s": time.perf_counter() - t0}
        out = FeatureCircuitResult(circuit, faith, held_f, curve, complete, params, timings)
        from .recording import record_curve

        if rec.write("circuit.json", circuit.save) is not None and rc.render:
            from ..features.feature_plot import draw_feature_circuit
            from .recording import _picture

            _picture("circuit picture", draw_feature_circuit, circuit, rec.path("circuit.png"))
        names, vals = scores.names_scores()
        rec.write("node_scores.tsv", lambda p: _write_scores(p, names, vals))
        record_curve(rec, curve, f"feature circuit on {tk.name} (held out)"
                     if rc.render else None)
        rec.write("completeness.tsv", complete.write_tsv)
        if rc.render:
            rec.write("report.html", lambda p: p.write_text(
                _report_html(out, names, vals, p.parent)))
        rec.log_metrics({"faithfulness": faith.normalized,
                         "faithfulness_held_out": held_f.normalized,
                         "metric_full_held_out": held_f.full, "metric_empty_held_out":
                         held_f.empty, "nodes": circuit.number_of_nodes(),
                         "edges": circuit.number_of_edges(), "nodes_total": len(names),
                         "cpr": curve.cpr, "cmd": curve.cmd, "completeness_cpr": complete.cpr,
                         **{k: v for k, v in timings.items()}})
        rec.record.update(params=params, timings=timings, faithfulness=faith.as_dict(),
                          faithfulness_held_out=held_f.as_dict(),
                          completeness=complete.as_dict(), config=_jsonable(asdict(cfg)))
        return out

    return recorded("features", f"features {tk.name}", rc, rc.experiment or tk.name,
                    {"params": params}, {"acdc.task": tk.name}, work)


def _split(options: dict, config, record) -> tuple[FeatureCircuitConfig, RecordConfig]:
    """Copies of ``config`` and ``record`` with the keyword ``options`` applied."""
    import dataclasses

    cfg = dataclasses.replace(config) if config is not None else FeatureCircuitConfig()
    rc = dataclasses.replace(record) if record is not None else RecordConfig()
    cf = {f.name for f in dataclasses.fields(cfg)}
    rf = {f.name for f in dataclasses.fields(rc)}
    unknown = sorted(set(options) - cf - rf)
    if unknown:
        raise TypeError(f"unknown option(s) {unknown}; options are {sorted(cf | rf)}")
    for k, v in options.items():
        setattr(cfg if k in cf else rc, k, v)
    return cfg, rc


def _jsonable(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _report_html(result: FeatureCircuitResult, names, vals, folder) -> str:
    """The run's one page (the component runs' report style): what was run, faithfulness,
    the circuit and curve pictures, the most important nodes."""
    from ..evidence.report import _img, _table, html_page

    p, c = result.params, result.circuit
    rows = [["model", p["model"]], ["task", p["task"]], ["transcoders", p["transcoders"]],
            ["metric / ablation", f"{p['metric']} / {p['ablation']}"],
            ["nodes kept", f"{c.number_of_nodes()} of {len(names)} ({c.number_of_edges()} "
                           "edges)"],
            ["faithfulness (scored pairs)", f"{result.faithfulness.normalized:.3f}"],
            ["faithfulness (held-out pairs)", f"{result.held_out.normalized:.3f}"],
            ["held-out curve CPR / CMD", f"{result.curve.cpr:.3f} / {result.curve.cmd:.3f}"],
            ["completeness CPR", f"{result.completeness.cpr:.3f}"]]
    order = sorted(range(len(names)), key=lambda i: -abs(float(vals[i])))[:20]
    top = _table(["node", "score (attribution patching, IG)", "kept"],
                 [[names[i], f"{float(vals[i]):+.4f}", "yes" if names[i] in c.nodes else ""]
                  for i in order])
    sections = [("Run", _table(["", ""], rows)),
                ("Circuit", _img(folder / "circuit.png", "the kept features and their edges")),
                ("Faithfulness curve (held out)", _img(folder / "curve.png",
                                                       "faithfulness by node budget")),
                ("Most important nodes", top)]
    return html_page(f"Feature circuit: {p['task']} on {p['model']}", sections,
                     "task-level sparse feature circuit (acdc features circuit)")

