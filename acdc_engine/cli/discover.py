"""``acdc discover``: find the circuit of a task in a model."""

from __future__ import annotations

from pathlib import Path

from ..errors import AcdcError
from .args import (
    MAX_SUBSAMPLES,
    add_overwrite_arg,
    at_most,
    positive_seconds,
    model_ref,
    task_ref,
    add_threads_arg,
    add_tracking_args,
    count,
    finite,
    fraction,
    positive,
    record,
    settings,
    subsamples,
)

ORDER = 10

# acdc_engine.evaluation.selection's names, spelled here so that parsing imports no torch
# (tests/cli/test_selection_cli.py checks they agree)
SELECTIONS = ("topk", "threshold", "target", "ilp", "positive", "bootstrap")
ENSEMBLES = ("mean", "min", "max")
NORMALISATIONS = ("max", "rank")
LEVELS = ("edge", "node", "neuron")  # acdc_engine.evaluation.levels.LEVELS

def _cmd_discover(args) -> int:
    from ..distributed import in_job

    if args.workers > 1 and not in_job():
        return _launch(args.workers)
    if not in_job():
        return _discover(args)
    from ..distributed import init_from_env, shutdown
    from ..distributed.launch import report_failure
    from ..records.signals import exit_code
    from . import describe

    ranks = None
    try:  # a rank: its error goes to the launcher, which prints one line for the job
        ranks = init_from_env("gloo" if str(args.device or "").startswith("cpu") else None)
        if not ranks.main:  # rank 0 speaks for the job (its warnings are every rank's)
            import warnings

            warnings.simplefilter("ignore")
        return _discover(args, ranks)
    except BaseException as e:
        msg = str(e) if isinstance(e, AcdcError) else describe(e)
        if not report_failure(msg):
            raise
        return exit_code(e) if isinstance(e, KeyboardInterrupt) else 2
    finally:
        if ranks is not None:
            shutdown(ranks)


def _launch(workers: int) -> int:
    """``acdc discover ... --workers N``: the same command as N ranks (torchrun's launcher)."""
    import sys

    from ..distributed.launch import launch

    argv = sys.argv[1:]
    if "discover" not in argv:
        raise AcdcError("--workers needs acdc discover's own command line: run it from a "
                        "shell, or torchrun --nproc-per-node N -m acdc_engine.cli discover ...")
    argv = argv[argv.index("discover"):]
    rest, skip = [], False
    for a in argv:  # the ranks get the command without --workers
        if skip:
            skip = False
        elif a == "--workers":
            skip = True
        elif not a.startswith("--workers="):
            rest.append(a)
    return launch(["acdc_engine.cli", *rest], workers)


def _discover(args, ranks=None) -> int:
    from ..api import discover
    from ..distributed import SINGLE

    ranks = ranks or SINGLE
    options = settings(args)
    if args.prune_metric:
        options["prune_metric"] = args.prune_metric
    result = discover(
        args.model, args.task, args.method, metric=args.metric, ablation=args.ablation,
        revision=args.revision, stability=args.stability,
        n_edges=args.edges, threshold=args.threshold, target=args.target,
        level=args.level, n_nodes=args.nodes,
        n_examples=args.examples, batch_size=args.batch_size, settings=options,
        seed=args.seed, device=args.device, dtype=args.dtype, threads=args.threads,
        positions=args.positions, render=not args.no_render, selection=args.selection,
        ensemble=args.ensemble, normalisation=args.normalisation, bootstrap=args.bootstrap,
        min_frequency=args.min_frequency, ilp_time_limit=args.ilp_time_limit, ranks=ranks,
        **record(args),
    )
    if not ranks.main:  # rank 0 reports the job
        return 0
    print(result.summary())
    if result.stability:
        print("\n".join(result.stability.get("sentences", [])))
    return 2 if result.tracking_error else 0


def register(sub) -> None:
    d = sub.add_parser("discover", help="find the circuit of a task in a model",
                       epilog="example: acdc discover --task ioi-names --method eap --edges 100 "
                              "--no-track")
    d.add_argument("--model", type=model_ref,
                   help="model name, local path or hub id (default: the task's model)")
    d.add_argument("--revision", help="hub branch, tag or commit of the model")
    d.add_argument("--task", type=task_ref, default="ioi",
                   help="registered task name or data file (default ioi)")
    d.add_argument("--method", default="eap-ig",
                   help="a registered method: eap, eap-ig, ... (default eap-ig; see acdc "
                        "plugins); several separated by commas (eap,eap-ig) score an ensemble")
    d.add_argument("--metric", help="metric name (default: the task's)")
    d.add_argument("--ablation", choices=["corrupted", "mean", "zero"],
                   help="what replaces removed edges (default: the task's, usually corrupted)")
    size = d.add_mutually_exclusive_group()
    size.add_argument("--edges", type=count, help="keep the top N edges by |score|")
    size.add_argument("--threshold", type=finite, help="keep edges with |score| >= T (with "
                      "--level node: nodes whose summed score has |score| >= T)")
    size.add_argument("--nodes", type=count, help="with --level node: keep the top N heads "
                      "and MLPs by their summed edge scores; with --level neuron: the top N "
                      "heads and MLP neurons")
    d.add_argument("--level", choices=LEVELS, default="edge",
                   help="circuit granularity: edge (default), node (whole heads and MLPs kept "
                        "or removed, as MIB's node level) or neuron (heads and MLP neurons, "
                        "scored by attribution patching: --method eap); the curve and CPR/CMD "
                        "count those units")
    d.add_argument("--target", type=fraction, default=0.8,
                   help="without --edges/--threshold: smallest budget reaching this "
                        "normalized faithfulness (default 0.8)")
    d.add_argument("--selection", choices=SELECTIONS,
                   help="how the circuit is chosen from the scores: topk (--edges), threshold "
                        "(--threshold), target (neither), ilp (best connected circuit of at "
                        "most --edges edges), positive (positive scores first, --edges), "
                        "bootstrap (edges chosen in at least --min-frequency of --bootstrap "
                        "resamples; --edges or --threshold); default from --edges/--threshold")
    d.add_argument("--ensemble", choices=ENSEMBLES, default="mean",
                   help="with several methods: combine their normalised scores by the mean, "
                        "min or max per edge (default mean)")
    d.add_argument("--normalisation", choices=NORMALISATIONS, default="max",
                   help="with several methods: put each method's |scores| on one scale by "
                        "dividing by the largest (max) or by rank (default max)")
    d.add_argument("--bootstrap", type=at_most(MAX_SUBSAMPLES, " (each resample rescores "
                                               "every edge)", at_least=1), default=20,
                   metavar="N", help="--selection bootstrap: resamples (default 20)")
    d.add_argument("--min-frequency", type=fraction, default=0.5,
                   help="--selection bootstrap: keep edges chosen in at least this fraction "
                        "of the resamples (default 0.5)")
    d.add_argument("--ilp-time-limit", type=positive_seconds, default=60.0, metavar="SECONDS",
                   help="--selection ilp: stop the solver after this long with its best "
                        "connected circuit (default 60)")
    d.add_argument("--positions", metavar="SPLIT",
                   help="split every edge by token position: 'tokens' (one group per token "
                        "index), 'named' (the task's named positions, e.g. IO,S1,S2,END, and "
                        "'other'), or some names, e.g. IO,S2,END (default: no split)")
    d.add_argument("--examples", type=positive,
                   help="number of task examples (default: the task's)")
    d.add_argument("--batch-size", type=positive, default=32)
    d.add_argument("--ig-steps", type=positive, help="EAP-IG interpolation steps (default 5)")
    d.add_argument("--prune-metric", "--pruning-metric", dest="prune_metric",
                   help="ACDC's pruning metric: a metric name or 'task' (default: kl_div, or "
                        "the task's metric when the model's output has one entry)")
    d.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a method setting, e.g. --set tau=0.02 (repeatable)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--stability", type=subsamples, default=0, metavar="N",
                   help="also rediscover on N random halves of the data: bootstrap intervals, "
                        "circuit stability, redundancy (docs/evidence.md)")
    d.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if any)")
    d.add_argument("--dtype", default=None, help="float32 (default) or bfloat16")
    d.add_argument("--out", type=Path,
                   help="output directory (default results/EXPERIMENT/RUN-ID)")
    add_overwrite_arg(d)
    d.add_argument("--no-progress", action="store_true", help="no progress bars")
    d.add_argument("--no-render", action="store_true",
                   help="skip the circuit pictures (circuit.svg/.png/.html); faster")
    add_threads_arg(d)
    d.add_argument("--workers", type=positive, default=1, metavar="N",
                   help="run as N data-parallel ranks on this machine (torchrun's launcher, "
                        "gloo on CPUs, one thread each): the examples are sharded and the "
                        "sums all-reduced; methods eap, eap-ig, acdc, acdc-guided, "
                        "edge-pruning, ugs (default 1; "
                        "torchrun --nproc-per-node N -m acdc_engine.cli discover ... is the "
                        "same across machines)")
    add_tracking_args(d)
    d.set_defaults(func=_cmd_discover)
