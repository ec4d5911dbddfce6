"""``acdc pairs make``: a validated pairs file from plain clean prompts (docs/pairs.md)."""

from __future__ import annotations

import argparse

from .args import add_threads_arg, count, model_ref

ORDER = 15

STRATEGY_NAMES = ("entity-swap", "token-swap", "role-swap", "number-change", "random-token")
# (acdc_engine.pairs.STRATEGIES, written out so that ``acdc --help`` does not import torch;
# tests/cli/test_pairs_cli.py checks they are the same)


def margin(text: str) -> float:
    """argparse type: a change of probability, 0 <= margin < 1."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= x < 1:
        raise argparse.ArgumentTypeError(f"must be a probability change in [0, 1), got {text}")
    return x


def _cmd_make(args) -> int:
    from ..pairs import make_pairs_file
    from ..resources import set_threads

    set_threads(args.threads)
    result, out, side = make_pairs_file(
        args.prompts, args.out, answers=args.answers, model=args.model,
        strategy=args.strategy, margin=args.margin, position=args.position, seed=args.seed)
    print(result.report(out, side))
    print(f"next: acdc discover --model {args.model} --task {out}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("pairs", help="make a pairs file from plain prompts",
                       epilog="example: acdc pairs make prompts.txt --strategy role-swap --out "
                              "pairs.jsonl")
    ps = p.add_subparsers(dest="pairs_command", required=True)
    m = ps.add_parser(
        "make", help="clean prompts -> clean/corrupted pairs, each checked on the model",
        description="Corrupt each clean prompt with a strategy, run the model on both, keep "
                    "the pairs of equal token length whose corruption moves the answer's "
                    "probability by at least --margin; print how many survived and why the "
                    "rest did not (the rejected rows go to OUT.rejected.jsonl).",
        epilog="example: acdc pairs make prompts.txt --strategy entity-swap --out "
               "pairs.jsonl")
    m.add_argument("prompts", help="text file: one clean prompt a line, optionally a tab and "
                                   "its answer (a word, or a JSON string); # comments")
    m.add_argument("--strategy", choices=STRATEGY_NAMES, default="entity-swap",
                   help="how to corrupt (default entity-swap)")
    m.add_argument("--model", type=model_ref, default="gpt2-ioi-bpe",
                   help="model name, local path or hub id (default gpt2-ioi-bpe)")
    m.add_argument("--out", help="pairs file to write, .jsonl (default PROMPTS.pairs.jsonl)")
    m.add_argument("--answers", help="file of answers, one a line, for the prompts in order "
                                     "(default: the model's top prediction)")
    m.add_argument("--margin", type=margin, default=0.1,
                   help="least change of the answer's probability (default 0.1)")
    m.add_argument("--position", type=int,
                   help="token-swap: the token index to swap (negative from the end; default "
                        "the answer's first occurrence)")
    m.add_argument("--seed", type=count, default=0, help="random seed of the swaps (default 0)")
    add_threads_arg(m)
    m.set_defaults(func=_cmd_make)
