"""``acdc probe``: is a label linearly decodable from the residual stream, layer by layer?

    acdc probe --task ioi --label answer_first          # ABBA vs BABA, last position
    acdc probe --task ioi --label template --position 0 --out results/probe

Logistic-regression probes per layer with held-out accuracy and a shuffled-label control.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import add_threads_arg, finite, positive, task_problem

ORDER = 47


def train_share(text: str) -> float:
    """argparse type: the training share, a number in (0, 1) (the rest is held out)."""
    x = finite(text)
    if not 0 < x < 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1) (the rest is held out to test "
                                         f"on), got {x:g}")
    return x


def _cmd_probe(args) -> int:
    from ..evidence.probes import probe_task

    problem, data = task_problem(args)
    res = probe_task(problem, data, args.label, position=args.position, train=args.train,
                     seed=args.seed)
    print(f"{'layer':>5} {'probe':>7} {'control':>8}")
    for i, (a, c) in enumerate(zip(res.accuracy, res.control)):
        print(f"{i:>5} {a:>7.3f} {c:>8.3f}")
    print("\n".join(res.sentences()))
    if args.out:
        import json

        from ..evidence.plots import plot_probes

        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "probe.json").write_text(json.dumps(res.as_dict(), indent=2))
        print(f"written to {plot_probes(res, args.out / 'probe.png')}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("probe", help="linear probes for a task label, per layer, with a "
                                     "shuffled-label control",
                       epilog="example: acdc probe --task ioi --label answer_first")
    p.add_argument("--task", default="ioi")
    p.add_argument("--model", help="default: the task's model")
    p.add_argument("--label", default="answer_first",
                   help="answer, answer_first, or a column of the task's rows")
    p.add_argument("--position", type=int, default=-1,
                   help="token position, from 0 or from the end as -1, -2, ... (default -1)")
    p.add_argument("--examples", type=positive, help="number of examples (default: the task's)")
    p.add_argument("--train", type=train_share, default=0.7,
                   help="training share, in (0, 1); the rest is held out (default 0.7)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write probe.json and probe.png here")
    p.add_argument("--device", default=None)
    add_threads_arg(p)
    p.set_defaults(func=_cmd_probe)
