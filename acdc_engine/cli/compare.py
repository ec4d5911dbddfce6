"""``acdc compare``: what changed between two circuits; does each transfer."""

from __future__ import annotations

from pathlib import Path

from .args import add_threads_arg, count, positive

ORDER = 40

def _cmd_compare(args) -> int:
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
    cp = sub.add_parser("compare", help="compare two circuits (e.g. base vs fine-tuned model)")
    cp.add_argument("circuits", nargs=2, type=Path, help="two circuit.json files")
    cp.add_argument("--models", nargs=2, metavar=("MODEL_A", "MODEL_B"),
                    help="also evaluate each circuit in each model (faithfulness table)")
    cp.add_argument("--task", help="task to evaluate on (default: the first circuit's)")
    cp.add_argument("--examples", type=positive, help="number of task examples")
    cp.add_argument("--device", default=None)
    cp.add_argument("--top", type=count, default=10, help="largest score changes to list")
    add_threads_arg(cp)
    cp.set_defaults(func=_cmd_compare)
