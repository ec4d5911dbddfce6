"""Evidence for a recorded run: reopen it, rebuild its problem, compute and log the evidence.

    ctx = open_run("e68fe159...")                 # run id, run directory or run.json
    st = stability_evidence(ctx, n=5)             # (acdc_engine.evidence.gather)
    log_to_run(ctx, [path], {"stability.mean_jaccard": 0.8})
    stability_for_run(RUN, n=5); report_for_run(RUN)   # what `acdc stability` / `acdc report` do
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch


from ..circuit import Circuit
from ..errors import AcdcError
from ..evidence.gather import (
    RunContext,
    _metrics_of,
    stability_evidence,
    write_json,
)
from ..problem import Problem
from ..records import find_run
from ..tasks import TaskData

__all__ = ["open_run", "problem_for", "log_to_run", "stability_for_run", "report_for_run"]


def problem_for(params: dict, model=None, device=None) -> tuple[Problem, TaskData]:
    """The problem a run was computed on (same model, task, metric, ablation, examples, seed,
    batch size), from its recorded params; ``model`` may be given already loaded."""
    from ..api.setup import build_problem, load_model, load_task

    lm = load_model(model or params["model"], device=device, dtype=params.get("dtype"))
    task = load_task(params.get("task_ref") or params["task"])
    return build_problem(lm, task, metric=params.get("metric"), ablation=params.get("ablation"),
                         n_examples=_int(params.get("n_examples")),
                         batch_size=_int(params.get("batch_size")) or 32,
                         seed=_int(params.get("seed")) or 0)


def _int(v):
    return None if v in (None, "", "None") else int(v)


def open_run(ref: str, uri: str | None = None, device=None) -> RunContext:
    """Reopen a discovery run by id, directory or run.json (see :func:`records.find_run`).
    A position-aware run opens unsplit (:meth:`Circuit.unsplit`; scores summed over positions):
    the evidence tools read unsplit circuits."""
    src = find_run(ref, uri=uri)
    d = Path(src.scores_path).parent
    cpath = d / "circuit.json"
    if not cpath.exists() and src.run_id:
        from ..records import store

        try:
            c = store.client(src.record.get("tracking_uri") or store.resolve_uri(uri))
            cpath = Path(c.download_artifacts(src.run_id, "circuit.json", str(d)))
        except Exception as e:
            raise AcdcError(f"run {ref!r} has no circuit.json ({e})") from None
    if not cpath.exists():
        raise AcdcError(f"run {ref!r} has no circuit.json in {d} (is it a discovery run?)")
    if src.record.get("kind") not in (None, "discover"):
        raise AcdcError(f"run {ref!r} is a {src.record.get('kind')} run, not a discovery")
    problem, data = problem_for(src.params, device=device)
    circuit = Circuit.load(cpath)
    positioned = bool(circuit.graph.positions)
    if positioned:  # the evidence tools read unsplit circuits: an edge kept at any position
        circuit = circuit.unsplit()
    if circuit.graph != problem.graph:
        raise AcdcError(f"run {ref!r}'s circuit ({circuit.graph.summary()}) is not of the "
                        f"model's graph ({problem.graph.summary()})")
    local = d if (d / "run.json").exists() and not str(d).startswith(tempfile.gettempdir()
                                                                      + "/acdc-source-") else None
    from ..records import read_scores

    g = problem.graph
    scores = (read_scores(src.scores_path, g.with_positions(src.params["positions_groups"]
                                                               .split(",")))
              if positioned else read_scores(src.scores_path, g))
    if positioned:  # summed over positions, as Circuit.unsplit sums them
        scores = torch.nansum(scores.view(-1, g.n_edges), 0)
    return RunContext(ref, src.record, circuit, problem, data, local,
                      src.record.get("tracking_uri") or uri, scores)


def log_to_run(ctx: RunContext, files: list[Path], metrics: dict | None = None,
               artifact_path: str | None = None) -> str | None:
    """Attach ``files`` and ``metrics`` to the run's MLflow record; returns an error message
    when the store cannot be reached (the files stay on disk)."""
    if not ctx.run_id or len(ctx.run_id) != 32:
        return "the run has no MLflow record"
    from ..records import store

    try:
        c = store.client(store.resolve_uri(ctx.tracking_uri))
        for f in files:
            c.log_artifact(ctx.run_id, str(f), artifact_path)
        for k, v in (metrics or {}).items():
            if v is not None and v == v:
                c.log_metric(ctx.run_id, k, float(v))
    except Exception as e:  # the evidence is on disk; a store problem must not lose it
        return f"could not log to MLflow run {ctx.run_id}: {e}"
    return None


def stability_for_run(ref: str, n: int = 5, fraction: float = 0.5, n_boot: int = 1000,
                      methods: list[str] | None = None, uri: str | None = None,
                      device=None) -> tuple[dict, Path, str | None]:
    """:func:`stability_evidence` of a recorded run, written to ``stability.json`` in its
    directory and logged to its MLflow run (artifact and ``*_ci_*``/``stability_*``
    metrics). Returns ``(evidence, path, MLflow error or None)``."""
    ctx = open_run(ref, uri=uri, device=device)
    st = stability_evidence(ctx, n=n, fraction=fraction, n_boot=n_boot, methods=methods)
    path = write_json(ctx.out_dir / "stability.json", st)
    return st, path, log_to_run(ctx, [path], _metrics_of(st))


def report_for_run(ref: str, out: str | Path | None = None, n: int = 5, n_boot: int = 1000,
                   pdf: bool = True, uri: str | None = None,
                   device=None) -> tuple[Path, Path | None, str | None]:
    """``acdc report``: the one-page report of a run (see :mod:`.report`), its PDF when a
    converter is installed, logged under ``report/`` in the run's MLflow artifacts. Reuses
    the run's ``stability.json`` when it was computed with the same ``n``.
    Returns ``(html, pdf or None, MLflow error or None)``."""
    from ..evidence.report import to_pdf, write_report

    ctx = open_run(ref, uri=uri, device=device)
    st = None
    if ctx.run_dir is not None and (f := ctx.run_dir / "stability.json").exists():
        try:
            cached = json.loads(f.read_text())
        except (OSError, ValueError):  # a damaged cache is computed again, and replaced
            cached = None
        if isinstance(cached, dict) and (cached.get("settings") or {}).get("n") == n:
            st = cached
    html_path = write_report(ctx, Path(out) if out else None, n_stability=n, n_boot=n_boot,
                             stability=st)
    pdf_path = to_pdf(html_path) if pdf else None
    files = [html_path] + ([pdf_path] if pdf_path else [])
    err = log_to_run(ctx, files, None, "report")
    return html_path, pdf_path, err
