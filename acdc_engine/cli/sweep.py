"""``acdc sweep``: optuna search over methods and settings (Pareto front)."""

from __future__ import annotations

from .args import (
    add_threads_arg,
    add_tracking_args,
    count,
    finite,
    model_ref,
    positive,
    positive_seconds,
    task_ref,
)

ORDER = 60

def _cmd_sweep(args) -> int:
    from ..api.search import DEFAULT_ABLATIONS, DEFAULT_METHODS, sweep
    from ..records import results_dir

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
        heartbeat=args.heartbeat, grace=args.grace,
    )
    print(result.summary())
    return 0


def register(sub) -> None:
    sw = sub.add_parser("sweep", help="optuna search over methods and settings: Pareto front "
                                      "of faithfulness vs circuit size",
                        epilog="example: acdc sweep --task ioi --n-trials 20")
    sw.add_argument("--task", default="ioi", type=task_ref,
                    help="task name or data file (default ioi)")
    sw.add_argument("--model", type=model_ref,
                    help="model (default: the task's, tiny-ioi for ioi)")
    sw.add_argument("--n-trials", type=count, default=20,
                    help="the study's total of finished trials (default 20); a resumed study "
                         "runs only the missing ones")
    sw.add_argument("--storage", help="optuna storage URL (default "
                                      "sqlite:///results/optuna.db; 'memory' for none)")
    sw.add_argument("--study-name", help="study name (default TASK-MODEL); same name + storage "
                                         "resumes the study")
    sw.add_argument("--methods", help="comma-separated methods (default eap,eap-ig,acdc)")
    sw.add_argument("--ablations", help="comma-separated ablations (default "
                                        "corrupted,mean,zero)")
    sw.add_argument("--tau-min", type=finite, default=1e-4, help="ACDC tau range (log scale)")
    sw.add_argument("--tau-max", type=finite, default=1e-1)
    sw.add_argument("--examples", type=positive,
                    help="number of task examples (default: the task's)")
    sw.add_argument("--batch-size", type=positive, default=32)
    sw.add_argument("--seed", type=int, default=0)
    sw.add_argument("--device", default=None)
    sw.add_argument("--dtype", default=None)
    sw.add_argument("--timeout", type=finite,
                    help="stop starting trials after this many seconds")
    sw.add_argument("--heartbeat", type=positive_seconds, default=30.0,
                    help="seconds between optuna heartbeats of a running trial on a database "
                         "storage (default 30): a killed worker's trial is redone")
    sw.add_argument("--grace", type=positive_seconds,
                    help="seconds without a heartbeat before a trial is marked failed and "
                         "queued again (default 4 heartbeats)")
    add_threads_arg(sw)
    add_tracking_args(sw, experiment="sweep-TASK")
    sw.set_defaults(func=_cmd_sweep)
