"""``acdc compare``: what changed between two circuits or two models; does each transfer.

    acdc compare A/circuit.json B/circuit.json [--models M_A M_B --task T]
    acdc compare --discover BASE TUNED --task ioi [--method eap-ig --edges 60]

With ``--discover`` both models' circuits are found with the same settings and data; the
result (diff diagram, score changes with 95% intervals, cross-faithfulness table) is written
under ``results/compare/<run>/`` and logged as one MLflow run.
"""

from __future__ import annotations

from pathlib import Path

from .args import (add_overwrite_arg, add_threads_arg, add_tracking_args, boot, count,
                   positive, settings)

ORDER = 40


def _cmd_discover_compare(args) -> int:
    from ..api.compare import compare_models

    opts = {"n_examples": args.examples, "device": args.device, "threads": args.threads,
            "settings": settings(args), "progress": False}
    if args.edges is not None:
        opts["n_edges"] = args.edges
    if args.out is not None:
        opts["out"] = args.out
    if args.experiment:
        opts["experiment"] = args.experiment
    if args.tracking_uri:
        opts["tracking_uri"] = args.tracking_uri
    if args.no_track:
        opts["track"] = False
    if args.overwrite:
        opts["overwrite"] = True
    result = compare_models(args.discover[0], args.discover[1], args.task or "ioi",
                            args.method, names=tuple(args.names), n_boot=args.boot, **opts)
    print(result.summary(args.top))
    return 2 if result.tracking_error else 0


def _cmd_compare(args) -> int:
    if args.discover:
        if args.circuits:
            from ..errors import AcdcError

            raise AcdcError("give either two circuit files or --discover BASE TUNED, not both")
        return _cmd_discover_compare(args)
    if len(args.circuits) != 2:
        from ..errors import AcdcError

        raise AcdcError("compare needs two circuit.json files (or --discover BASE TUNED)")
    from ..evaluation.compare import compare_circuits

    names = [str(p) for p in args.circuits]
    print(compare_circuits(args.circuits[0], args.circuits[1]).summary("A", "B", args.top))
    if args.models:
        from ..api import cross_faithfulness
        from ..resources import set_threads

        set_threads(args.threads)
        table = cross_faithfulness(args.circuits, args.models, task=args.task,
                                   n_examples=args.examples, device=args.device)
        width = max(len(m) for m in args.models) + 2
        print("\nnormalized faithfulness (rows: circuit, columns: model)")
        print(" " * 4 + "".join(f"{m:>{width}s}" for m in args.models))
        for label, name, row in zip("AB", names, table):
            print(f"{label:4s}" + "".join(f"{v:>{width}.3f}" for v in row) + f"   {name}")
    return 0


def register(sub) -> None:
    cp = sub.add_parser("compare", help="compare two circuits or two models (e.g. base vs "
                                        "fine-tuned)",
                        epilog="example: acdc compare A/circuit.json B/circuit.json "
                               "--models BASE TUNED")
    cp.add_argument("circuits", nargs="*", type=Path, help="two circuit.json files")
    cp.add_argument("--models", nargs=2, metavar=("MODEL_A", "MODEL_B"),
                    help="also evaluate each circuit in each model (faithfulness table)")
    cp.add_argument("--discover", nargs=2, metavar=("BASE", "TUNED"),
                    help="discover the circuit in both models with the same settings and "
                         "compare them (diagram, score changes with intervals, files, MLflow)")
    cp.add_argument("--names", nargs=2, default=["base", "tuned"], metavar=("A", "B"),
                    help="labels of the two models (default base tuned)")
    cp.add_argument("--task", help="task (default: the first circuit's; ioi with --discover)")
    cp.add_argument("--method", default="eap-ig", help="discovery method with --discover")
    cp.add_argument("--edges", type=count, help="with --discover: keep the top N edges")
    cp.add_argument("--ig-steps", type=positive, help="EAP-IG interpolation steps")
    cp.add_argument("--set", action="append", metavar="KEY=VALUE", help="a method setting")
    cp.add_argument("--boot", type=boot, default=1000, help="bootstrap resamples")
    cp.add_argument("--out", type=Path, help="with --discover: output directory")
    add_overwrite_arg(cp)
    cp.add_argument("--examples", type=positive, help="number of task examples")
    cp.add_argument("--device", default=None)
    cp.add_argument("--top", type=count, default=10, help="largest score changes to list")
    add_threads_arg(cp)
    add_tracking_args(cp, experiment="compare")
    cp.set_defaults(func=_cmd_compare)
