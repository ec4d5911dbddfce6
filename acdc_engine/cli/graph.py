"""``acdc graph``: a model's node and edge counts."""

from __future__ import annotations

from .args import model_ref

ORDER = 50

def _cmd_graph(args) -> int:
    from ..api import load_model

    lm = load_model(args.model, device="cpu", revision=args.revision)
    g = lm.graph
    print(f"model {args.model} (family {lm.family})")
    print(g.summary())
    return 0


def register(sub) -> None:
    g = sub.add_parser("graph", help="print a model's node and edge counts",
                       epilog="example: acdc graph --model gpt2-ioi-bpe")
    g.add_argument("--model", type=model_ref, required=True,
                   help="model name, local path or hub id")
    g.add_argument("--revision", help="hub branch, tag or commit of the model")
    g.set_defaults(func=_cmd_graph)
