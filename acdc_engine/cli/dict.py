"""``acdc dict``: train, inspect and convert sparse dictionaries (SAEs, transcoders, CLTs).

    acdc dict train --model gpt2-ioi-bpe --kind transcoder --activation relu --features 512 \\
        --corpus corpus.txt --steps 1000 --out results/tc
    acdc dict info results/tc/dictionary.safetensors      # or a SAELens / circuit-tracer
                                                          # folder, a cached hub id
    acdc dict convert results/sae/dictionary.safetensors results/sae-saelens --to saelens

``train`` collects the model's activations over the corpus (one text per line; the MLP input
after its norm and the MLP output for transcoders, the residual stream after ``--layer`` for an
SAE), trains the dictionary, measures it on the corpus' last ``--eval-lines`` lines (fraction of
variance unexplained, L0, dead features; for transcoders the next-token loss with them spliced
in, no error term, and with ``--task`` the task's metric) and logs the figures to an MLflow run;
the dictionary goes to ``DIR/dictionary.safetensors`` (the engine's format, the figures in its
metadata). ``convert`` writes the engine's format, a SAELens folder (an SAE or one transcoder)
or a circuit-tracer folder (transcoders for every layer).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from .args import add_overwrite_arg, add_threads_arg, add_tracking_args, finite, positive, record

ORDER = 51


def nonnegative(text: str) -> float:
    """argparse type: a finite number >= 0."""
    x = finite(text)
    if x < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {x:g}")
    return x


@dataclass
class DictTrainResult:
    """What ``acdc dict train`` produced: the dictionary's file and its figures."""

    path: Path | None
    figures: dict
    out_dir: Path | None = None
    run_id: str | None = None
    tracking_uri: str | None = None
    tracking_error: str | None = None


def _flat(figs: dict) -> dict:
    """MLflow metrics: the means, and each layer's as ``layer{l}_{name}``."""
    out = {k: v for k, v in figs.items() if isinstance(v, (int, float))}
    for lf in figs.get("layers", []):
        out.update({f"layer{lf['layer']}_{k}": lf[k] for k in ("fvu", "l0", "dead")})
    return out


def train_run(args) -> DictTrainResult:
    """Collect, train, measure, save and record (see the module docstring)."""
    from ..api.config import RecordConfig
    from ..api.recording import recorded
    from ..api.setup import build_problem, load_model, load_task
    from ..errors import AcdcError
    from ..features.formats import save_dictionary
    from ..features.stats import figures
    from ..features.train import TrainConfig, collect, read_corpus, train

    cfg = TrainConfig(kind=args.kind, activation=args.activation, n_features=args.features,
                      k=args.k, layer=args.layer if args.layer is not None else 0,
                      steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                      sparsity=args.sparsity, seed=args.seed, progress=not args.no_progress)
    cfg.check()
    lines = read_corpus(args.corpus)
    if len(lines) <= args.eval_lines:
        raise AcdcError(f"corpus '{args.corpus}' has {len(lines)} lines, not more than "
                        f"--eval-lines {args.eval_lines}")
    lm = load_model(args.model, device=args.device)
    rc = RecordConfig(**record(args))
    params = {"model": lm.id, "kind": cfg.kind, "activation": cfg.activation,
              "features": cfg.n_features, "k": cfg.k, "layer": cfg.layer if cfg.kind == "sae"
              else None, "steps": cfg.steps, "lr": cfg.lr, "batch_size": cfg.batch_size,
              "sparsity": cfg.sparsity, "seed": cfg.seed, "corpus": str(args.corpus),
              "task": args.task}

    def work(rec):
        site = "resid" if cfg.kind == "sae" else "mlp"
        layers = [cfg.layer] if cfg.kind == "sae" else None
        train_lines, eval_lines = lines[:-args.eval_lines], lines[-args.eval_lines:]
        acts = collect(lm, train_lines, site, layers, args.max_len)
        dictionary = train(acts, cfg)
        eval_acts = collect(lm, eval_lines, site, layers, args.max_len)
        problem = build_problem(lm, load_task(args.task), n_examples=args.examples)[0] \
            if args.task else None
        figs = figures(dictionary, eval_acts, lm, eval_lines, problem).as_dict()
        figs["train_tokens"] = acts.n_tokens
        path = rec.write("dictionary.safetensors",
                         lambda p: save_dictionary(dictionary, p, figs))
        rec.log_params(params)
        rec.log_metrics(_flat(figs))
        for i, losses in enumerate(cfg.history):
            rec.log_series(f"loss{i}" if len(cfg.history) > 1 else "loss",
                           {50 * s: v for s, v in enumerate(losses)})
        rec.record.update(params=params, figures=figs)
        return DictTrainResult(path, figs)

    return recorded("dict", f"dict {cfg.kind} {Path(lm.id).name}", rc,
                    rc.experiment or "dictionaries", {"params": params},
                    {"acdc.model": lm.id}, work)


def describe(dictionary) -> list[str]:
    """Lines saying what a dictionary is: kind, shape, model, activation, figures."""
    from ..features.dictionary import CrossLayerTranscoder, Dictionary

    cfg = dictionary.config()
    if isinstance(dictionary, Dictionary):
        shape = (f"layer {dictionary.layer}, {dictionary.d_in} -> {dictionary.n_features} "
                 f"features -> {dictionary.d_out}")
    elif isinstance(dictionary, CrossLayerTranscoder):
        shape = (f"{dictionary.n_layers} layers, d_model {dictionary.d_model}, "
                 f"{dictionary.n_features} features per layer (each writes to its layer and "
                 "every later one)")
    else:
        shape = (f"{dictionary.n_layers} layers, d_model {dictionary.d_model}, features per "
                 f"layer {[t.n_features for t in dictionary.layers]}")
    act = cfg.get("activation") or cfg["layers"][0]["activation"]
    k = cfg.get("k") or (cfg.get("layers") or [{}])[0].get("k")
    out = [f"{getattr(dictionary, 'source', '')}", f"  kind: {cfg['kind']}", f"  shape: {shape}",
           f"  activation: {act}" + (f" (k={k})" if k else ""),
           f"  model: {getattr(dictionary, 'model', None) or 'not recorded'}"]
    figs = getattr(dictionary, "figures", None) or {}
    if figs:
        means = ", ".join(f"{k} {v:.4g}" for k, v in figs.items() if isinstance(v, float))
        out.append(f"  figures: {means}")
        for lf in figs.get("layers", []):
            out.append(f"    layer {lf['layer']}: FVU {lf['fvu']:.4f}, L0 {lf['l0']:.1f}, "
                       f"dead {lf['dead']:.1%}")
    return out


def _cmd_dict(args) -> int:
    from ..errors import AcdcError
    from ..features.circuit_tracer_format import save_circuit_tracer
    from ..features.formats import save_dictionary, save_saelens
    from ..features.shipped import load_any_format as load_any
    from ..resources import set_threads

    set_threads(args.threads)
    if args.action == "train":
        if args.corpus is None:
            from ..features.cards import shipped_corpus_path

            args.corpus = shipped_corpus_path()
        for name in ("model", "out"):
            if getattr(args, name) is None:
                raise AcdcError(f"acdc dict train needs --{name}")
        res = train_run(args)
        f = res.figures
        print(f"FVU {f['fvu']:.4f}, L0 {f['l0']:.1f}, dead {f['dead']:.1%}" + (
            f"; next-token loss {f['loss_clean']:.4f}, spliced {f['loss_spliced']:.4f}"
            if "loss_spliced" in f else "") + (
            f"; metric {f['metric_clean']:.4g}, spliced {f['metric_spliced']:.4g}"
            if "metric_spliced" in f else ""))
        if res.out_dir is not None:
            print(f"written to {res.out_dir}/")
        return 2 if res.tracking_error else 0
    if not args.paths:
        raise AcdcError(f"acdc dict {args.action} needs a dictionary (a file, folder or hub id)")
    if args.action == "info":
        for src in args.paths:
            print("\n".join(describe(load_any(src))))
        return 0
    if len(args.paths) != 2:
        raise AcdcError("acdc dict convert needs a source and a destination")
    d = load_any(args.paths[0])
    dst = Path(args.paths[1])
    if args.to == "saelens":
        save_saelens(d, dst)
    elif args.to == "circuit-tracer":
        save_circuit_tracer(d, dst)
    else:
        save_dictionary(d, dst / "dictionary.safetensors" if dst.suffix != ".safetensors"
                        else dst, getattr(d, "figures", None))
    print(f"written to {dst}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("dict", help="train, inspect or convert SAEs and transcoders",
                       epilog="example: acdc dict train --model gpt2-ioi-bpe --corpus c.txt "
                              "--out results/tc")
    p.add_argument("action", choices=["train", "info", "convert"])
    p.add_argument("paths", nargs="*", help="info: dictionaries; convert: SOURCE DEST")
    p.add_argument("--model")
    p.add_argument("--kind", choices=["sae", "transcoder", "clt"], default="transcoder")
    p.add_argument("--activation", choices=["relu", "topk", "jumprelu"], default="relu")
    p.add_argument("--features", type=positive, default=512, help="features (per layer)")
    p.add_argument("--k", type=positive, help="topk: active features per token")
    p.add_argument("--layer", type=int, help="an SAE's layer (the residual stream after it)")
    p.add_argument("--corpus", type=Path, help="a text file, one text per line (default: the "
                                               "shipped corpus, acdc_tasks/data/corpus.txt)")
    p.add_argument("--steps", type=positive, default=1000)
    p.add_argument("--sparsity", type=nonnegative, default=0.1,
                   help="L1 (relu) or L0 (jumprelu) coefficient")
    p.add_argument("--lr", type=finite, default=3e-3)
    p.add_argument("--batch-size", type=positive, default=1024, help="tokens per step")
    p.add_argument("--max-len", type=positive, default=64, help="tokens per text, at most")
    p.add_argument("--eval-lines", type=positive, default=200,
                   help="the corpus' last lines, held out for the figures")
    p.add_argument("--task", help="also report this task's metric with the dictionary spliced")
    p.add_argument("--examples", type=positive, help="task examples for the metric")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--to", choices=["saelens", "circuit-tracer", "engine"], default="engine",
                   help="convert: the destination's format")
    p.add_argument("--out", help="train: the run directory")
    p.add_argument("--device", default=None)
    p.add_argument("--no-progress", action="store_true")
    add_tracking_args(p, experiment="dictionaries")
    add_overwrite_arg(p)
    add_threads_arg(p)
    p.set_defaults(func=_cmd_dict)
