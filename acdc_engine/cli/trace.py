"""``acdc trace``: the attribution graph of one prompt under a model's transcoders.

    acdc trace --prompt "When Mary and John went to the store, John gave a drink to"
    acdc trace --prompt "..." --model gpt2-ioi-bpe --transcoders PATH --out graphs/ --json

Prints the graph's size (full and pruned), its replacement and completeness scores, the logit
targets and the most influential features per layer. ``--out DIR`` writes the full graph
(``graph.pt``), circuit-tracer's graph JSON of the pruned graph (``<slug>.json`` and
``graph-metadata.json``, for its frontend, Neuronpedia's or ``acdc view``) and the report
(``summary.json``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .args import add_threads_arg, model_ref, positive

ORDER = 53


def _threshold(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= x <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {x:g}")
    return x


def _run(args) -> int:
    from ..api.feature_circuits import resolve_transcoders
    from ..api.setup import load_model
    from ..features.attribution_graph import trace
    from ..features.graph_summary import format_summary, summarize
    from ..features.splice import check_transcoders
    from ..resources import set_threads

    set_threads(args.threads)
    lm = load_model(args.model, device=args.device)
    tc = resolve_transcoders(args.transcoders, lm)
    check_transcoders(lm.adapter, tc, lm.id, f"transcoders '{args.transcoders or 'shipped'}'")
    graph = trace(lm, args.prompt, tc.to(lm.device), max_feature_nodes=args.max_feature_nodes,
                  batch_size=args.batch_size)
    report = summarize(graph, args.node_threshold, args.edge_threshold, lm.tokenizer)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        graph.save(args.out / "graph.pt")
        source = args.transcoders
        if source and Path(source).exists():
            source = str(Path(source).resolve())
        path = graph.to_circuit_tracer_json(args.out, args.slug, args.node_threshold,
                                            args.edge_threshold, lm.tokenizer, source)
        (args.out / "summary.json").write_text(json.dumps(report, indent=2))
        report["files"] = {"graph": str(args.out / "graph.pt"), "json": str(path)}
    cards = _cards(lm, tc, report, args.cards)
    if cards:
        report["cards"] = [c.to_dict() for c in cards]
    check = None
    if args.check:
        from ..features.interventions import predicted_vs_actual

        check = predicted_vs_actual(graph, model=lm, transcoders=tc, top=args.check)
        report["check"] = check.to_dict()
    print(json.dumps(report, indent=2) if args.json else format_summary(report))
    if check is not None and not args.json:
        print("does the graph predict what ablating its features does? (predicted: all paths "
              "of the frozen linear graph; actual: the feature zeroed in the model)")
        print(check.table())
    if cards and not args.json:
        print(f"cards of the {len(cards)} most influential features (the shipped corpus):")
        for card in cards:
            print(card.summary())
    if args.out is not None and not args.json:
        print(f"written to {args.out}/")
    return 0


def _cards(lm, tc, report: dict, n: int) -> list:
    """Feature cards of the ``n`` most influential features of the report's top features."""
    if not n:
        return []
    from ..features.cards import feature_card

    tops = [(f["influence"], int(layer), f["feature"])
            for layer, fs in report["top_features"].items() for f in fs]
    chosen = list(dict.fromkeys((layer, feature) for _, layer, feature in
                                sorted(tops, key=lambda t: -t[0])))[:n]
    return [feature_card(lm, tc, layer, feature, None, k=3) for layer, feature in chosen]


def register(sub) -> None:
    """``acdc trace``."""
    p = sub.add_parser("trace", help="the attribution graph of a prompt (transcoders, "
                                     "circuit-tracer's method and JSON)",
                       epilog='example: acdc trace --prompt "When Mary and John went to the '
                              'store, John gave a drink to" --cards 3 --out graphs/ioi')
    p.add_argument("--prompt", required=True, help="the text to trace (a BOS is prepended)")
    p.add_argument("--model", type=model_ref, default="gpt2-ioi-bpe",
                   help="model name, local path or hub id (default: the shipped gpt2-ioi-bpe)")
    p.add_argument("--transcoders", help="a path or cached hub id (default: the model's "
                                         "shipped transcoders)")
    p.add_argument("--node-threshold", type=_threshold, default=0.8,
                   help="pruning: keep nodes up to this cumulative influence (default 0.8)")
    p.add_argument("--edge-threshold", type=_threshold, default=0.98,
                   help="pruning: keep edges up to this cumulative influence (default 0.98)")
    p.add_argument("--max-feature-nodes", type=positive,
                   help="at most this many feature nodes, the most influential (default all)")
    p.add_argument("--batch-size", type=positive,
                   help="targets per backward pass (default 64 on CPU, 512 on a GPU)")
    p.add_argument("--out", type=Path, help="write graph.pt, the graph JSON and summary.json")
    p.add_argument("--slug", default="graph", help="the graph JSON's name (default graph)")
    p.add_argument("--cards", type=int, default=0, metavar="N",
                   help="also show the cards (top contexts, logit effects, density) of the N "
                        "most influential features (default 0)")
    p.add_argument("--check", type=int, default=0, metavar="N",
                   help="also ablate the N features with the largest predicted effect and "
                        "compare the graph's prediction with what the ablation does (default 0)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--device", default=None)
    add_threads_arg(p)
    p.set_defaults(func=_run)
