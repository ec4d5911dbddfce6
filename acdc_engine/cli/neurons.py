"""``acdc neurons``: ablate groups of one MLP layer's neurons over a task's examples.

    acdc neurons --task ioi --layer 1                         # top:1, top:8, top:32 from zero
    acdc neurons --layer 0 --groups 0:64 3,17,42 top:16 --source corrupted --out results/neurons

Each group is replaced (zero, the mean over corrupted prompts, or the corrupted run) at every
position; the effect on the metric is reported with a 95% bootstrap interval and as a share of
ablating the whole MLP. ``top:K`` takes the K neurons with the largest first-order direct
effect on the metric.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import add_threads_arg, count, positive, task_problem

ORDER = 49


def group_spec(text: str) -> str:
    """argparse type for a neuron group: refuses what selects no neuron whatever the MLP's
    size ('' and START:STOP with 0 <= STOP <= START); the rest is checked against the MLP."""
    t = text.strip().replace(" ", "")
    if t in ("", ",") or not t.strip(","):
        raise argparse.ArgumentTypeError(f"group {text!r} is empty: give indices '3,5,7', a "
                                         "slice '0:16', 'top:K' or 'all'")
    if t == "top:0":
        raise argparse.ArgumentTypeError(f"group {text!r} selects no neurons: K must be at "
                                         "least 1")
    if ":" in t and not t.startswith("top:"):
        a, _, b = t.partition(":")
        try:
            lo, hi = int(a or 0), int(b) if b else None
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"bad neuron group {text!r}: use indices '3,5,7', a slice '0:16', 'top:K' or "
                "'all'") from None
        if hi is not None and 0 <= hi <= lo:
            raise argparse.ArgumentTypeError(
                f"group {text!r} selects no neurons: a slice START:STOP takes START up to, not "
                "including, STOP (e.g. '0:16')")
    return text


def _cmd_neurons(args) -> int:
    from ..evidence.neurons import neuron_ablation

    problem, _ = task_problem(args)
    res = neuron_ablation(problem, args.layer, args.groups, source=args.source,
                          n_boot=args.boot, progress=True)
    print(f"m{args.layer}: {res.d_mlp} neurons, {args.source} ablation over "
          f"{problem.n_examples} examples; full model {problem.metric.name} {res.full:.4g}")
    print(f"{'group':>12} {'size':>5} {'effect':>10}  {'95% interval':>20} {'of MLP':>7}")
    rows = [*zip(res.groups, res.indices, res.effects, res.of_mlp),
            ("all", range(res.d_mlp), res.mlp_effect, 1.0)]
    for name, idx, e, share in rows:
        print(f"{name:>12} {len(idx):>5} {e.point:>+10.4g}  [{e.low:>+8.3g}, {e.high:>+8.3g}] "
              f"{share:>7.1%}")
    if res.direct is not None:
        order = res.direct.abs().argsort(descending=True)[:8].tolist()
        shown = ", ".join(f"{i} ({float(res.direct[i]):+.3g})" for i in order)
        print(f"largest direct effects: {shown}")
    if args.out:
        import json

        from ..evidence.plots import plot_neurons

        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "neurons.json").write_text(json.dumps(res.as_dict(), indent=2))
        print(f"written to {plot_neurons(res, args.out / 'neurons.png')}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("neurons", help="ablate groups of an MLP layer's neurons, with intervals",
                       epilog="example: acdc neurons --task ioi --layer 1 --groups top:8")
    p.add_argument("--task", default="ioi")
    p.add_argument("--model", help="default: the task's model")
    p.add_argument("--layer", type=count, default=0, help="the MLP's layer (default 0)")
    p.add_argument("--groups", nargs="+", type=group_spec, default=["top:1", "top:8", "top:32"],
                   help="neuron groups: indices 3,5,7, a slice 0:16, top:K (largest direct "
                        "effect) or all (default: top:1 top:8 top:32)")
    p.add_argument("--source", choices=["zero", "mean", "corrupted"], default="zero",
                   help="what replaces the neurons (default zero)")
    p.add_argument("--examples", type=positive, help="number of examples (default: the task's)")
    p.add_argument("--boot", type=positive, default=1000, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write neurons.json and neurons.png here")
    p.add_argument("--device", default=None)
    add_threads_arg(p)
    p.set_defaults(func=_cmd_neurons)
