"""The ``acdc`` command: a thin layer over the Python API.

    acdc discover                       # shipped tiny-ioi model on the ioi task, EAP-IG
    acdc discover --method eap --edges 50 --out results/my-run
    acdc evaluate --scores RUN_ID       # faithfulness curve, CPR and CMD of saved scores
    acdc runs --experiment ioi          # recent runs with their key metrics
    acdc graph --model path/to/hf-model # node and edge counts
    acdc sweep --n-trials 20            # optuna: methods x settings, Pareto front
    acdc plugins                        # what is registered, and by which package

Errors the user can fix are printed as one line (``error: ...``) with exit status 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from .errors import AcdcError


def _record(args) -> dict:
    """RecordConfig options from the tracking flags; default output results/EXPERIMENT/RUN-ID."""
    from .records import results_dir

    return dict(out=args.out, results=results_dir(), progress=not args.no_progress,
                track=not args.no_track, tracking_uri=args.tracking_uri,
                experiment=args.experiment)


def _cmd_discover(args) -> int:
    from .api import discover

    result = discover(
        args.model, args.task, args.method, metric=args.metric, ablation=args.ablation,
        n_edges=args.edges, threshold=args.threshold, target=args.target,
        n_examples=args.examples, batch_size=args.batch_size, settings=_settings(args),
        seed=args.seed, device=args.device, dtype=args.dtype, threads=args.threads,
        render=not args.no_render, **_record(args),
    )
    print(result.summary())
    return 2 if result.tracking_error else 0


def _cmd_evaluate(args) -> int:
    from .api import evaluate_scores

    budgets = _budgets(args.budgets) if args.budgets else None
    result = evaluate_scores(
        args.scores, model=args.model, task=args.task, metric=args.metric,
        ablation=args.ablation, n_examples=args.examples, batch_size=args.batch_size,
        seed=args.seed, device=args.device, dtype=args.dtype, threads=args.threads,
        ground_truth=args.ground_truth, **({"budgets": budgets} if budgets else {}),
        **_record(args),
    )
    print(result.summary())
    return 2 if result.tracking_error else 0


def _count(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def _positive(text: str) -> int:
    """argparse type: a whole number >= 1."""
    n = _count(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _finite(text: str) -> float:
    """argparse type: a finite number."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return x


def _fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    x = _finite(text)
    if not 0 < x <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {x:g}")
    return x


def _budgets(text: str) -> tuple[float, ...]:
    try:
        out = tuple(float(b) for b in text.split(",") if b.strip())
    except ValueError:
        raise AcdcError(f"--budgets expects percentages like 1,5,10,100, got {text!r}") from None
    if not out or any(not 0 < b <= 100 for b in out):
        raise AcdcError(f"--budgets must be percentages in (0, 100], got {text!r}")
    return out


def _cmd_runs(args) -> int:
    from .records import TrackingError, format_runs, list_runs

    try:
        rows, where = list_runs(experiment=args.experiment, limit=args.limit,
                                uri=args.tracking_uri, track=not args.no_track)
    except TrackingError as e:
        print(f"warning: {e}; listing run.json files instead", file=sys.stderr)
        rows, where = list_runs(experiment=args.experiment, limit=args.limit, track=False)
    print(f"{len(rows)} most recent run(s) from {where}"
          + (f", experiment {args.experiment!r}" if args.experiment else ""))
    print(format_runs(rows))
    return 0


def _add_threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=_positive,
                   help="CPU threads for torch (default: torch's; on a busy machine 1 is "
                        "often much faster)")


def _add_tracking_args(p: argparse.ArgumentParser, experiment="the task's name") -> None:
    p.add_argument("--experiment", help=f"MLflow experiment (default: {experiment})")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                                          "else sqlite:///results/mlflow.db)")
    p.add_argument("--no-track", action="store_true", help="do not log an MLflow run")


def _settings(args) -> dict:
    """Method settings from --ig-steps and --set KEY=VALUE (numbers parsed as numbers)."""
    out = {}
    if args.ig_steps is not None:
        out["ig_steps"] = args.ig_steps
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise AcdcError(f"--set expects KEY=VALUE, got {item!r}")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        out[key.strip()] = value
    return out


def _cmd_compare(args) -> int:
    from .evaluation.compare import compare_circuits

    names = [str(p) for p in args.circuits]
    print(compare_circuits(args.circuits[0], args.circuits[1]).summary("A", "B", args.top))
    if args.models:
        from .api import cross_faithfulness
        from .resources import set_threads

        set_threads(args.threads)
        table = cross_faithfulness(args.circuits, args.models, task=args.task,
                                   n_examples=args.examples, device=args.device)
        width = max(len(m) for m in args.models) + 2
        print("\nnormalized faithfulness (rows: circuit, columns: model)")
        print(" " * 4 + "".join(f"{m:>{width}s}" for m in args.models))
        for label, name, row in zip("AB", names, table):
            print(f"{label:4s}" + "".join(f"{v:>{width}.3f}" for v in row) + f"   {name}")
    return 0


def _cmd_graph(args) -> int:
    from .api import load_model

    lm = load_model(args.model, device="cpu")
    g = lm.graph
    print(f"model {args.model} (family {lm.family})")
    print(g.summary())
    return 0


def _cmd_plugins(args) -> int:
    from .plugins import providers, registry

    by_plugin = registry().by_plugin()
    for plugin, dist in sorted(providers().items()):
        print(f"{plugin}  ({dist})")
        for item in sorted(by_plugin.get(plugin, [])):
            print(f"    {item}")
    return 0


def _cmd_sweep(args) -> int:
    from .api.search import DEFAULT_ABLATIONS, DEFAULT_METHODS, sweep
    from .records import results_dir

    split = lambda text: tuple(x.strip() for x in text.split(",") if x.strip())  # noqa: E731
    result = sweep(
        task=args.task, model=args.model, n_trials=args.n_trials, storage=args.storage,
        study_name=args.study_name,
        methods=split(args.methods) if args.methods else DEFAULT_METHODS,
        ablations=split(args.ablations) if args.ablations else DEFAULT_ABLATIONS,
        tau_range=(args.tau_min, args.tau_max), n_examples=args.examples,
        batch_size=args.batch_size, seed=args.seed, device=args.device, dtype=args.dtype,
        track=not args.no_track, tracking_uri=args.tracking_uri, experiment=args.experiment,
        results=results_dir(), timeout=args.timeout, threads=args.threads,
    )
    print(result.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="acdc", description=__doc__.split("\n\n")[0])
    from . import __version__

    p.add_argument("--version", action="version", version=f"acdc-engine {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("discover", help="find the circuit of a task in a model")
    d.add_argument("--model", help="model name, local path or hub id (default: the task's model)")
    d.add_argument("--task", default="ioi", help="registered task name or data file (default ioi)")
    d.add_argument("--method", default="eap-ig",
                   help="a registered method: eap, eap-ig, ... (default eap-ig; see acdc plugins)")
    d.add_argument("--metric", help="metric name (default: the task's)")
    d.add_argument("--ablation", choices=["corrupted", "mean", "zero"],
                   help="what replaces removed edges (default: the task's, usually corrupted)")
    size = d.add_mutually_exclusive_group()
    size.add_argument("--edges", type=_count, help="keep the top N edges by |score|")
    size.add_argument("--threshold", type=_finite, help="keep edges with |score| >= T")
    d.add_argument("--target", type=_fraction, default=0.8,
                   help="without --edges/--threshold: smallest budget reaching this "
                        "normalized faithfulness (default 0.8)")
    d.add_argument("--examples", type=_positive,
                   help="number of task examples (default: the task's)")
    d.add_argument("--batch-size", type=_positive, default=32)
    d.add_argument("--ig-steps", type=_positive, help="EAP-IG interpolation steps (default 5)")
    d.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a method setting, e.g. --set tau=0.02 (repeatable)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if any)")
    d.add_argument("--dtype", default=None, help="float32 (default) or bfloat16")
    d.add_argument("--out", type=Path,
                   help="output directory (default results/EXPERIMENT/RUN-ID)")
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.add_argument("--no-render", action="store_true",
                   help="skip the circuit pictures (circuit.svg/.png/.html); faster")
    _add_threads_arg(d)
    _add_tracking_args(d)
    d.set_defaults(func=_cmd_discover)

    ev = sub.add_parser("evaluate", help="faithfulness curve, CPR and CMD of saved edge scores")
    ev.add_argument("--scores", required=True, metavar="RUN_OR_FILE",
                    help="an edge_scores.tsv, a run directory, or a run id (local or MLflow)")
    ev.add_argument("--model", help="model (default: the scored run's)")
    ev.add_argument("--task", help="task name or data file (default: the scored run's)")
    ev.add_argument("--metric", help="metric (default: the scored run's)")
    ev.add_argument("--ablation", choices=["corrupted", "mean", "zero"],
                    help="ablation (default: the scored run's)")
    ev.add_argument("--examples", type=_positive, help="number of examples (default: the run's)")
    ev.add_argument("--batch-size", type=_positive, help="(default: the run's)")
    ev.add_argument("--seed", type=int, help="(default: the run's)")
    ev.add_argument("--budgets", help="edge budgets in percent, comma-separated "
                                      "(default 0.1,0.2,0.5,1,2,5,10,20,50,100)")
    ev.add_argument("--ground-truth", type=Path, metavar="FILE",
                    help="also the edge and node ROC AUC of the scores against this "
                         "ground-truth circuit (a JSON edge list, {\"edges\": [...]}, or a "
                         "circuit.json)")
    ev.add_argument("--device", default=None)
    ev.add_argument("--dtype", default=None)
    ev.add_argument("--out", type=Path, help="output directory (default results/EXPERIMENT/RUN-ID)")
    ev.add_argument("--no-progress", action="store_true", help="no progress bars")
    _add_threads_arg(ev)
    _add_tracking_args(ev)
    ev.set_defaults(func=_cmd_evaluate)

    rn = sub.add_parser("runs", help="list recent runs with their key metrics")
    rn.add_argument("--experiment", help="only this experiment (e.g. a task name)")
    rn.add_argument("--limit", type=_positive, default=20, help="how many runs (default 20)")
    rn.add_argument("--tracking-uri", help="MLflow tracking URI (default as for discover)")
    rn.add_argument("--no-track", action="store_true",
                    help="read results/*/*/run.json instead of the MLflow store")
    rn.set_defaults(func=_cmd_runs)

    cp = sub.add_parser("compare", help="compare two circuits (e.g. base vs fine-tuned model)")
    cp.add_argument("circuits", nargs=2, type=Path, help="two circuit.json files")
    cp.add_argument("--models", nargs=2, metavar=("MODEL_A", "MODEL_B"),
                    help="also evaluate each circuit in each model (faithfulness table)")
    cp.add_argument("--task", help="task to evaluate on (default: the first circuit's)")
    cp.add_argument("--examples", type=_positive, help="number of task examples")
    cp.add_argument("--device", default=None)
    cp.add_argument("--top", type=_count, default=10, help="largest score changes to list")
    _add_threads_arg(cp)
    cp.set_defaults(func=_cmd_compare)

    g = sub.add_parser("graph", help="print a model's node and edge counts")
    g.add_argument("--model", required=True, help="model name, local path or hub id")
    g.set_defaults(func=_cmd_graph)

    sw = sub.add_parser("sweep", help="optuna search over methods and settings: Pareto front "
                                      "of faithfulness vs circuit size")
    sw.add_argument("--task", default="ioi", help="task name or data file (default ioi)")
    sw.add_argument("--model", help="model (default: the task's, tiny-ioi for ioi)")
    sw.add_argument("--n-trials", type=_count, default=20,
                    help="the study's total of finished trials (default 20); a resumed study "
                         "runs only the missing ones")
    sw.add_argument("--storage", help="optuna storage URL (default "
                                      "sqlite:///results/optuna.db; 'memory' for none)")
    sw.add_argument("--study-name", help="study name (default TASK-MODEL); same name + storage "
                                         "resumes the study")
    sw.add_argument("--methods", help="comma-separated methods (default eap,eap-ig,acdc)")
    sw.add_argument("--ablations", help="comma-separated ablations (default "
                                        "corrupted,mean,zero)")
    sw.add_argument("--tau-min", type=_finite, default=1e-4, help="ACDC tau range (log scale)")
    sw.add_argument("--tau-max", type=_finite, default=1e-1)
    sw.add_argument("--examples", type=_positive,
                    help="number of task examples (default: the task's)")
    sw.add_argument("--batch-size", type=_positive, default=32)
    sw.add_argument("--seed", type=int, default=0)
    sw.add_argument("--device", default=None)
    sw.add_argument("--dtype", default=None)
    sw.add_argument("--timeout", type=_finite,
                    help="stop starting trials after this many seconds")
    _add_threads_arg(sw)
    _add_tracking_args(sw, experiment="sweep-TASK")
    sw.set_defaults(func=_cmd_sweep)

    pl = sub.add_parser("plugins", help="list plugins and what each provides")
    pl.set_defaults(func=_cmd_plugins)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except AcdcError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
