"""``acdc evaluate``: faithfulness curve, CPR and CMD of saved edge scores."""

from __future__ import annotations

from pathlib import Path

from .args import (
    add_overwrite_arg,
    add_threads_arg,
    add_tracking_args,
    budgets,
    model_ref,
    positive,
    record,
    task_ref,
)



ORDER = 20

def _cmd_evaluate(args) -> int:
    if args.mib_file is not None:
        return _cmd_evaluate_mib(args)
    from ..api import evaluate_scores

    pcts = budgets(args.budgets) if args.budgets else None
    result = evaluate_scores(
        args.scores, model=args.model, task=args.task, metric=args.metric,
        revision=args.revision,
        ablation=args.ablation, n_examples=args.examples, batch_size=args.batch_size,
        seed=args.seed, device=args.device, dtype=args.dtype, threads=args.threads,
        ground_truth=args.ground_truth, **({"budgets": pcts} if pcts else {}),
        **record(args),
    )
    print(result.summary())
    return 2 if result.tracking_error else 0


def _cmd_evaluate_mib(args) -> int:
    """``--mib-file``: the same as ``acdc mib evaluate``."""
    from ..errors import AcdcError
    from .mib import _cmd_evaluate

    if args.model is None:
        raise AcdcError("--mib-file needs --model (a MIB file does not name its model)")
    if (args.task is None) == (args.mib_data is None):
        raise AcdcError("--mib-file needs exactly one of --task and --mib-data")
    return _cmd_evaluate(args)


def register(sub) -> None:
    ev = sub.add_parser("evaluate", help="faithfulness curve, CPR and CMD of saved edge scores",
                        epilog="example: acdc evaluate --scores RUN_ID --budgets 1,5,10,100")
    what = ev.add_mutually_exclusive_group(required=True)
    what.add_argument("--scores", metavar="RUN_OR_FILE",
                      help="an edge_scores.tsv, a run directory, or a run id (local or MLflow)")
    what.add_argument("--mib-file", type=Path, metavar="FILE.json",
                      help="a MIB circuit file (EAP-IG Graph.to_json): MIB's CPR and CMD and "
                           "the engine's curve of its scores (needs --model and --task or "
                           "--mib-data; as acdc mib evaluate)")
    ev.add_argument("--mib-data", type=Path, metavar="FILE",
                    help="with --mib-file: task data as a local MIB data file")
    ev.add_argument("--counterfactual", metavar="COLUMN",
                    help="with --mib-data: the counterfactual column")
    ev.add_argument("--signed", action="store_true",
                    help="with --mib-file: rank edges by signed score (MIB's absolute=False)")
    ev.add_argument("--json", type=Path, metavar="OUT.json",
                    help="with --mib-file: also write the results")
    ev.add_argument("--model", type=model_ref, help="model (default: the scored run's)")
    ev.add_argument("--revision", help="hub branch, tag or commit of the model")
    ev.add_argument("--task", type=task_ref,
                    help="task name or data file (default: the scored run's)")
    ev.add_argument("--metric", help="metric (default: the scored run's)")
    ev.add_argument("--ablation", choices=["corrupted", "mean", "zero"],
                    help="ablation (default: the scored run's)")
    ev.add_argument("--examples", type=positive, help="number of examples (default: the run's)")
    ev.add_argument("--batch-size", type=positive, help="(default: the run's)")
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
    add_overwrite_arg(ev)
    ev.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_threads_arg(ev)
    add_tracking_args(ev)
    ev.set_defaults(func=_cmd_evaluate)
