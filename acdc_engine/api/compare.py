"""Does a circuit still work in another model? The cross-faithfulness table.

    from acdc_engine.api import cross_faithfulness
    table = cross_faithfulness([circuit_base, circuit_tuned], ["base", "tuned"], task="ioi")

``table[i][j]`` is the normalized faithfulness of circuit ``i`` evaluated in model ``j``: the
diagonal is each circuit in its own model; off the diagonal, whether a circuit transfers.
The CLI is ``acdc compare A/circuit.json B/circuit.json [--models M_A M_B --task T]``.

Base vs fine-tuned as one job (:func:`compare_models`, ``acdc compare --discover BASE TUNED``):
discovery on both models with the same settings and data, score changes with bootstrap
intervals, the cross-faithfulness table, a diff diagram, files and one MLflow run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AcdcError
from ..evaluation.compare import as_circuit
from ..metrics import Faithfulness
from .setup import build_problem, load_model, load_task

__all__ = ["cross_faithfulness", "CrossConfig", "compare_models", "ModelComparison"]


@dataclass
class CrossConfig:
    """How circuits are evaluated across models; None = the first circuit's setting."""

    task: str | None = None
    metric: str | None = None
    ablation: str | None = None
    n_examples: int | None = None
    batch_size: int = 32
    seed: int = 0
    device: str | None = None
    dtype: str | None = None


def cross_faithfulness(circuits: list, models: list, task: str | None = None,
                       config: CrossConfig | None = None, **options) -> list[list[float]]:
    """Normalized faithfulness of each circuit (rows) in each model (columns).

    ``circuits`` are Circuits, networkx circuits or circuit.json paths; ``options`` are
    CrossConfig fields. Each model is loaded once and its ablated activations computed once for
    all circuits. Position-aware circuits run with their position split (all of them must share
    it); an unsplit circuit among them keeps its edges at every position."""
    cfg = config or CrossConfig()
    for k, v in options.items():
        if not hasattr(cfg, k):
            raise TypeError(f"unknown option {k!r}")
        setattr(cfg, k, v)
    cs = [as_circuit(c) for c in circuits]
    first = cs[0].attrs
    splits = {(c.graph.positions, c.attrs.get("position_split")) for c in cs if c.graph.positions}
    if len(splits) > 1:
        raise AcdcError("the circuits are split by different positions "
                        f"({'; '.join(','.join(p) for p, _ in splits)}); compare circuits of "
                        "one split, or their unsplit forms (Circuit.unsplit)")
    positions, split = next(iter(splits), ((), None))
    if positions and not split:
        raise AcdcError("a position-aware circuit that does not record its split "
                        "(position_split); rediscover it with acdc discover --positions")
    task_obj = load_task(task or cfg.task or first.get("task_ref") or first["task"])
    table = [[float("nan")] * len(models) for _ in cs]
    for j, model in enumerate(models):
        lm = load_model(model, device=cfg.device, dtype=cfg.dtype)
        problem, _ = build_problem(
            lm, task_obj, metric=cfg.metric or first.get("metric"),
            ablation=cfg.ablation or first.get("ablation"),
            n_examples=cfg.n_examples or first.get("n_examples"), batch_size=cfg.batch_size,
            seed=cfg.seed, positions=split)
        g = problem.graph
        if g.positions != positions:
            raise AcdcError(f"model {lm.id!r} splits the task into positions "
                            f"{','.join(g.positions)}, the circuits into {','.join(positions)}")
        masks = []
        for c in cs:
            if c.graph.base.n_edges != g.base.n_edges:
                raise AcdcError(f"circuit from a {c.graph.base.n_edges}-edge graph cannot run in "
                                f"model {lm.id!r} ({g.base.n_edges} edges)")
            m = c.mask()  # [W, R] or [W, R, G]
            masks.append(m[..., None].expand(*m.shape, g.n_groups).contiguous()
                         if g.positions and not c.graph.positions else m)
        values = problem.evaluate([*masks, None, problem.empty_mask()])
        full, empty = values[-2], values[-1]
        for i, v in enumerate(values[:-2]):
            table[i][j] = Faithfulness(v, full, empty).normalized
    return table


# ----- base vs fine-tuned: discovery on both, deltas with intervals, diagram, records ----------
@dataclass
class ModelComparison:
    """``acdc compare --discover``: both models' circuits found with the same settings on the
    same data, how they differ (:class:`~acdc_engine.evaluation.compare.Comparison`), every
    edge's score change with its interval, and the cross-faithfulness table."""

    names: tuple[str, str]
    comparison: object
    deltas: list
    cross: list[list[float]]
    faithfulness: tuple[float, float]
    out_dir: Path | None = None
    run_id: str | None = None
    tracking_uri: str | None = None
    tracking_error: str | None = None
    files: dict = field(default_factory=dict)

    @property
    def significant(self) -> list:
        """Score changes whose 95% interval excludes zero."""
        return [d for d in self.deltas if d.delta.excludes_zero()]

    def summary(self, top: int = 10) -> str:
        a, b = self.names
        lines = [self.comparison.summary(a, b, top=0)]
        lines.append(f"faithfulness of each circuit in its own model: {a} "
                     f"{self.faithfulness[0]:.3f}, {b} {self.faithfulness[1]:.3f}")
        sig = self.significant
        lines.append(f"score changes ({b} - {a}) with 95% bootstrap intervals; {len(sig)} of "
                     f"{len(self.deltas)} edges changed beyond noise:")
        for d in self.deltas[:top]:
            mark = "*" if d.delta.excludes_zero() else " "
            lines.append(f" {mark} {d.edge:<22s} {d.named(self.names):<12s} {d.score_a:+.4g} -> "
                         f"{d.score_b:+.4g}  change {d.delta}")
        lines.append("cross-faithfulness (rows: circuit of, columns: evaluated in)")
        lines.append(" " * 10 + "".join(f"{n:>12s}" for n in self.names))
        for n, row in zip(self.names, self.cross):
            lines.append(f"{n:<10s}" + "".join(f"{v:>12.3f}" for v in row))
        if self.out_dir is not None:
            lines.append(f"written to {self.out_dir}/")
        if self.run_id is not None:
            lines.append(f"MLflow run {self.run_id} in {self.tracking_uri}")
        return "\n".join(lines)


def compare_models(base, tuned, task: str = "ioi", method: str = "eap-ig",
                   names: tuple[str, str] = ("base", "tuned"), n_boot: int = 1000,
                   config=None, record=None, **options) -> ModelComparison:
    """Discover the circuit of ``task`` in both models with the same settings and data, then
    compare: shared/only-base/only-tuned edges, per-edge score changes with bootstrap
    intervals (paired per example; EAP-IG or EAP scores per example), the cross-faithfulness
    table, a diff diagram on one layout. ``options`` are :func:`~acdc_engine.api.discover`'s
    (DiscoverConfig/RecordConfig fields). Written to ``results/compare/<run>/`` (or ``out``)
    and logged as one MLflow run with the two discoveries nested under it."""
    import dataclasses
    import json

    from ..evaluation.compare import compare_circuits
    from ..evidence.diff import draw_diff, per_example_scores, score_deltas
    from ..evidence.plots import plot_deltas
    from ..records import results_dir
    from .config import split_options
    from .discover import discover
    from .recording import recorded

    cfg, rc = split_options(options, config, record)
    cfg.check()
    if rc.results is None and rc.out is None:
        rc.results = results_dir()
    experiment = rc.experiment or "compare"
    params = {"base": str(getattr(base, "id", base)), "tuned": str(getattr(tuned, "id", tuned)),
              "task": str(task), "method": method, "n_boot": n_boot}

    def work(rec) -> ModelComparison:
        rec.log_params(params)
        results = []
        for name, model in zip(names, (base, tuned)):
            sub = dataclasses.replace(rc, out=rec.dir / name if rec.dir else None, nested=True,
                                      experiment=experiment, results=None)
            results.append(discover(model, task, method, config=cfg, record=sub))
        ca, cb = (r.circuit for r in results)
        comp = compare_circuits(ca, cb)
        na, nb = ca.number_of_edges(), cb.number_of_edges()
        if cfg.default_search and na != nb:
            comp.warnings.append(
                f"the target search kept circuits of different sizes ({na} vs {nb} edges): "
                f"the edge Jaccard is at most {min(na, nb) / max(na, nb):.2f}; pass --edges "
                "to compare circuits of one size")
        scored = method if method in ("eap", "eap-ig") else "eap"
        per = []
        from ..scoring.attribution import IG_STEPS
        from .setup import build_problem, load_model, load_task

        for model in (base, tuned):
            lm = load_model(model, device=cfg.device, dtype=cfg.dtype)
            prob, _ = build_problem(lm, load_task(task), metric=cfg.metric,
                                    ablation=cfg.ablation, n_examples=cfg.n_examples,
                                    batch_size=cfg.batch_size, seed=cfg.seed)
            per.append(per_example_scores(prob, scored,
                                          int(cfg.settings.get("ig_steps", IG_STEPS))))
        deltas = score_deltas(ca.graph, per[0], per[1], ca.edge_names, cb.edge_names, n_boot)
        cross = cross_faithfulness([ca, cb], [base, tuned], task=task, metric=cfg.metric,
                                   ablation=cfg.ablation, n_examples=cfg.n_examples,
                                   batch_size=cfg.batch_size, seed=cfg.seed, device=cfg.device,
                                   dtype=cfg.dtype)
        out = ModelComparison(tuple(names), comp, deltas, cross,
                              tuple(r.faithfulness.normalized for r in results))
        if rec.dir is not None:
            title = f"{names[0]} vs {names[1]} on {task} ({method})"
            out.files["diff"] = draw_diff(ca.graph, deltas, rec.dir / "diff.png", title, names)
            shown = deltas[:30]
            out.files["deltas"] = plot_deltas([d.edge for d in shown], [d.delta for d in shown],
                                              rec.dir / "deltas.png")
            (rec.dir / "comparison.json").write_text(json.dumps({
                "names": list(names), "shared": comp.shared, "only_base": comp.only_a,
                "only_tuned": comp.only_b, "edge_jaccard": comp.edge_jaccard,
                "node_jaccard": comp.node_jaccard, "warnings": comp.warnings,
                "deltas": [d.as_dict(names) for d in deltas], "cross_faithfulness": cross,
                "faithfulness": list(out.faithfulness), "scores_per_example": scored},
                indent=2))
            (rec.dir / "summary.txt").write_text(out.summary() + "\n")
            from ..evidence.report import write_compare_page

            out.files["page"] = write_compare_page(rec.dir / "report.html", names, str(task),
                                                   comp, deltas, cross, out.faithfulness,
                                                   out.files)
        rec.log_metrics({"edge_jaccard": comp.edge_jaccard, "node_jaccard": comp.node_jaccard,
                         "edges_shared": len(comp.shared), "edges_only_base": len(comp.only_a),
                         "edges_only_tuned": len(comp.only_b),
                         "significant_changes": len(out.significant),
                         "faithfulness_base": out.faithfulness[0],
                         "faithfulness_tuned": out.faithfulness[1],
                         **{f"cross_{names[i]}_in_{names[j]}": cross[i][j]
                            for i in range(2) for j in range(2)}})
        return out

    return recorded("compare", f"compare {params['base']} {params['tuned']}", rc, experiment,
                    {"params": params}, {"acdc.task": str(task)}, work)
