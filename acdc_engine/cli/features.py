"""``acdc features``: task-level feature circuits, feature cards and feature interventions.

    acdc features circuit --task ioi-names --model gpt2-ioi-bpe --nodes 40 --held-out 0.25
    acdc features card --model gpt2-ioi-bpe --layer 2 --feature 17
    acdc features intervene --model gpt2-ioi-bpe --prompt "..." --edit 2:17@9=0

``circuit`` scores every transcoder feature and error node over the task's clean/corrupted
pairs (attribution patching with integrated gradients), keeps the top ``--nodes`` (or those
above ``--threshold``), scores the edges among them, and reports the faithfulness on the
held-out pairs; one MLflow run with circuit.json and the curves. ``--transcoders`` is a path
or cached hub id (default: the model's shipped transcoders).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .args import (add_overwrite_arg, add_threads_arg, add_tracking_args, finite, positive,
                   record, task_ref)

ORDER = 52

def fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    x = finite(text)
    if not 0 < x < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {x:g}")
    return x


def parse_edit(text: str):
    """argparse type: ``LAYER:FEATURE[@POS[,POS..]][=VALUE]`` -> a FeatureEdit."""
    from ..errors import AcdcError
    from ..features.interventions import parse_edit as parse

    try:
        return parse(text)
    except AcdcError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _circuit(args) -> int:
    from ..api.feature_circuits import feature_circuit_run
    from ..resources import set_threads

    set_threads(args.threads)
    res = feature_circuit_run(
        args.model, args.task, args.transcoders, nodes=args.nodes, threshold=args.threshold,
        steps=args.ig_steps, held_out=args.held_out, source=args.ablation,
        per_position=args.per_position, metric=args.metric, n_examples=args.examples,
        batch_size=args.batch_size, seed=args.seed, device=args.device,
        render=not args.no_render, **record(args))
    print(res.summary())
    if res.out_dir is not None:
        print(f"written to {res.out_dir}/")
    return 2 if res.tracking_error else 0


def _load(args):
    from ..api.feature_circuits import resolve_transcoders
    from ..api.setup import load_model
    from ..features.splice import check_transcoders
    from ..resources import set_threads

    set_threads(args.threads)
    lm = load_model(args.model, device=args.device)
    tc = resolve_transcoders(args.transcoders, lm)
    check_transcoders(lm.adapter, tc, lm.id, f"transcoders '{args.transcoders or 'shipped'}'")
    return lm, tc.to(lm.device)


def _card(args) -> int:
    import json

    from ..features.cards import feature_card
    from ..features.train import read_corpus

    lm, tc = _load(args)
    corpus = None if args.corpus is None else read_corpus(args.corpus)
    card = feature_card(lm, tc, args.layer, args.feature, corpus, k=args.top)
    print(card.summary())
    if args.json:
        args.json.write_text(json.dumps(card.to_dict(), indent=1))
        print(f"written to {args.json}")
    return 0


def _intervene(args) -> int:
    from ..features.interventions import intervene, prompt_ids

    lm, tc = _load(args)
    out = intervene(lm, tc, prompt_ids(lm, args.prompt, not args.no_bos), args.edit)
    print(out.summary())
    return 0


def _common(p, model_required: bool = True) -> None:
    p.add_argument("--model", required=model_required,
                   help="model name, local path or hub id")
    p.add_argument("--transcoders", help="transcoders: a path or cached hub id (default: the "
                                         "model's shipped ones)")
    p.add_argument("--device", default=None)
    add_threads_arg(p)


def register(sub) -> None:
    p = sub.add_parser("features", help="feature circuits of a task, feature cards, "
                                        "feature interventions",
                       epilog="example: acdc features circuit --task ioi-names --model "
                              "gpt2-ioi-bpe --nodes 40 --held-out 0.25 --no-track")
    fs = p.add_subparsers(dest="action", required=True)
    c = fs.add_parser("circuit", help="the sparse feature circuit of a task (Marks et al.)",
                      epilog="example: acdc features circuit --task ioi-names --model "
                             "gpt2-ioi-bpe --nodes 40")
    c.add_argument("--task", type=task_ref, default="ioi-names")
    _common(c, model_required=False)
    size = c.add_mutually_exclusive_group()
    size.add_argument("--nodes", type=positive, help="keep the top N nodes (default 40)")
    size.add_argument("--threshold", type=finite, help="keep nodes with |score| >= T")
    c.add_argument("--held-out", type=fraction, default=0.25,
                   help="fraction of the pairs the faithfulness is reported on (default 0.25)")
    c.add_argument("--ig-steps", type=positive, default=10,
                   help="integrated-gradients steps (1: plain attribution patching)")
    c.add_argument("--ablation", choices=["corrupted", "zero", "mean"],
                   help="what removed nodes become (default: the task's ablation)")
    c.add_argument("--per-position", action="store_true", help="one node per token position")
    c.add_argument("--metric", help="default: the task's")
    c.add_argument("--examples", type=positive)
    c.add_argument("--batch-size", type=positive, default=16)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--out", type=Path, help="run directory (default results/EXPERIMENT/RUN)")
    c.add_argument("--no-render", action="store_true", help="no curve picture")
    c.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_tracking_args(c)
    add_overwrite_arg(c)
    c.set_defaults(func=_circuit)

    k = fs.add_parser("card", help="a feature's top contexts, logit effects and density",
                      epilog="example: acdc features card --model gpt2-ioi-bpe --layer 2 "
                             "--feature 17")
    _common(k)
    k.add_argument("--layer", type=int, required=True)
    k.add_argument("--feature", type=int, required=True)
    k.add_argument("--corpus", type=Path, help="a text file, one text a line (default: the "
                                              "shipped corpus)")
    k.add_argument("--top", type=positive, default=8, help="contexts and tokens shown")
    k.add_argument("--json", type=Path, help="also write the card as JSON here")
    k.set_defaults(func=_card)

    i = fs.add_parser("intervene", help="ablate or clamp features on a prompt",
                      epilog="example: acdc features intervene --model gpt2-ioi-bpe --prompt "
                             "\"When Mary and John went to the store, John gave a drink to\" "
                             "--edit 2:17 --edit 3:5@12=4")
    _common(i)
    i.add_argument("--prompt", required=True)
    i.add_argument("--edit", type=parse_edit, action="append", required=True,
                   help="LAYER:FEATURE[@POS,..][=VALUE]: ablate (no value, or 0) or clamp")
    i.add_argument("--no-bos", action="store_true", help="do not put the BOS token first")
    i.set_defaults(func=_intervene)
