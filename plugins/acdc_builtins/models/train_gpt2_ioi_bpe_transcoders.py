"""Train the shipped transcoders of ``gpt2-ioi-bpe``: per-layer transcoders and a cross-layer
transcoder, on CPU in minutes, deterministic.

Usage (from the repository root)::

    python plugins/acdc_builtins/models/train_gpt2_ioi_bpe_transcoders.py            # train, card
    python plugins/acdc_builtins/models/train_gpt2_ioi_bpe_transcoders.py --measure_only=1
    python plugins/acdc_builtins/models/train_gpt2_ioi_bpe_transcoders.py --steps=200 \\
        --out_dir=/tmp/tc                                                         # quick check

Every ``Config`` field can be overridden as ``--name=value``. The corpus is the shipped
``acdc_tasks/data/corpus.txt`` (IOI sentences of the model's training distribution, the
task's corrupted prompts, and lines of the literature tasks' corpus); its last ``n_eval`` lines
are held out for the figures. Every other line of the training part starts with the BOS token
(``<|endoftext|>``), as attribution graphs' prompts do, whose position itself is left out.
Activations: each layer's MLP input after ``ln_2`` and the MLP's output, from the engine's
forward (:func:`acdc_engine.features.train.collect`). Writes into ``out_dir`` (default
``gpt2-ioi-bpe-transcoders/`` next to this file) ``transcoders.safetensors`` (a
``TranscoderSet``), ``clt.safetensors`` (a ``CrossLayerTranscoder``), both in the engine's
format with their figures in the metadata, ``training.json`` and ``README.md`` (the card).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
MODEL = "gpt2-ioi-bpe"


@dataclass
class Config:
    features: int = 512        # per layer, per-layer transcoders
    clt_features: int = 256    # per layer, the cross-layer transcoder
    activation: str = "relu"
    sparsity: float = 0.05     # L1 coefficient (relu) / L0 coefficient (jumprelu)
    clt_sparsity: float = 0.05
    steps: int = 800
    clt_steps: int = 800
    lr: float = 3e-3
    batch_size: int = 1024
    max_len: int = 64
    n_eval: int = 300          # held-out corpus lines for the figures
    n_task: int = 200          # ioi-names examples for the task metric
    seed: int = 0
    clt: int = 1               # also train the cross-layer transcoder
    ioi_seed: int = 1_000_003  # ioi-names rows for the next-token loss on IOI text
    measure_only: int = 0      # 1: no training; re-measure the files in out_dir, rewrite card
    out_dir: str = ""


def parse_args(argv: list[str]) -> Config:
    """``--name=value`` overrides of :class:`Config`."""
    cfg = Config()
    types = {f.name: f.type for f in dataclasses.fields(Config)}
    for a in argv:
        name, _, value = a.removeprefix("--").partition("=")
        if name not in types:
            raise SystemExit(f"unknown option {a!r}; options: {', '.join(types)}")
        kind = {"int": int, "float": float, "str": str}[types[name]]
        setattr(cfg, name, kind(value))
    return cfg


def _activations(model, lines, cfg):
    """MLP inputs/outputs of ``lines``: half of them BOS-first (BOS position left out)."""
    from acdc_engine.features.train import Activations, collect

    a = collect(model, lines[0::2], site="mlp", max_len=cfg.max_len, bos=True)
    b = collect(model, lines[1::2], site="mlp", max_len=cfg.max_len)
    return Activations([torch.cat(p) for p in zip(a.x, b.x)], [torch.cat(p) for p in zip(a.y, b.y)],
                       "mlp", a.layers, a.model, a.n_tokens + b.n_tokens)


def _figures(dictionary, model, eval_acts, eval_lines, problem, ioi_texts) -> dict:
    """The figures on the held-out lines, plus the next-token loss on IOI sentences."""
    from acdc_engine.features.stats import figures, next_token_loss

    out = figures(dictionary, eval_acts, model, eval_lines, problem).as_dict()
    out["loss_ioi_clean"] = next_token_loss(model, ioi_texts)
    out["loss_ioi_spliced"] = next_token_loss(model, ioi_texts, dictionary)
    return out


def _ioi_texts(cfg, tokenizer) -> list[str]:
    """``n_task`` ioi-names sentences with their answers (a seed the corpus does not use)."""
    try:
        from acdc_tasks.literature import ioi_names
    except ImportError:  # pragma: no cover - a plain checkout
        sys.path.insert(0, str(REPO_ROOT / "tasks"))
        from acdc_tasks.literature import ioi_names
    return [r["clean"] + r["answer"] for r in ioi_names.rows(cfg.n_task, cfg.ioi_seed,
                                                              tokenizer)]


def main(argv: list[str] | None = None) -> dict:
    """Train, measure and write the shipped transcoders; returns ``training.json``'s dict."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    from acdc_engine.api.setup import build_problem, load_model, load_task
    from acdc_engine.features.formats import load_dictionary, save_dictionary
    from acdc_engine.features.train import TrainConfig, read_corpus, train

    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(cfg.out_dir) if cfg.out_dir else HERE / f"{MODEL}-transcoders"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    model = load_model(MODEL)
    corpus = REPO_ROOT / "tasks" / "acdc_tasks" / "data" / "corpus.txt"
    lines = read_corpus(corpus)
    train_lines, eval_lines = lines[:-cfg.n_eval], lines[-cfg.n_eval:]
    old = json.loads((out / "training.json").read_text()) if cfg.measure_only else None
    acts = None if cfg.measure_only else _activations(model, train_lines, cfg)
    eval_acts = _activations(model, eval_lines, cfg)
    problem = build_problem(model, load_task("ioi-names"), n_examples=cfg.n_task)[0]
    ioi_texts = _ioi_texts(cfg, model.tokenizer)
    record = {"model": MODEL, "config": dataclasses.asdict(cfg), "corpus": "acdc_tasks/data/"
              "corpus.txt", "train_tokens": old["train_tokens"] if old else acts.n_tokens,
              "eval_tokens": eval_acts.n_tokens, "ioi_sentences": len(ioi_texts),
              "dictionaries": {}, "versions": {"torch": torch.__version__}}
    if old:  # the training recipe is the one that made the files
        record["config"] = {**old["config"], "measure_only": 1}
    todo = [("transcoders", "transcoder", cfg.features, cfg.sparsity, cfg.steps)]
    if cfg.clt:
        todo.append(("clt", "clt", cfg.clt_features, cfg.clt_sparsity, cfg.clt_steps))
    for name, kind, n, sparsity, steps in todo:
        t = time.time()
        if old:
            entry = old["dictionaries"][name]
            dictionary = load_dictionary(out / f"{name}.safetensors")
            seconds, history = entry["figures"]["train_seconds"], entry["losses"]
            n, sparsity, steps = (entry[k] for k in ("features_per_layer", "sparsity", "steps"))
        else:
            tc_cfg = TrainConfig(kind=kind, activation=cfg.activation, n_features=n,
                                 steps=steps, lr=cfg.lr, batch_size=cfg.batch_size,
                                 sparsity=sparsity, seed=cfg.seed)
            dictionary = train(acts, tc_cfg)
            seconds, history = time.time() - t, tc_cfg.history
        figs = _figures(dictionary, model, eval_acts, eval_lines, problem, ioi_texts)
        figs["train_seconds"] = round(seconds, 1)
        save_dictionary(dictionary, out / f"{name}.safetensors", figs)
        record["dictionaries"][name] = {"kind": kind, "features_per_layer": n,
                                        "sparsity": sparsity, "steps": steps, "figures": figs,
                                        "losses": history}
        print(f"{name}: FVU {figs['fvu']:.4f}, L0 {figs['l0']:.1f}, dead {figs['dead']:.1%}, "
              f"next-token loss {figs['loss_clean']:.4f} -> {figs['loss_spliced']:.4f}, "
              f"metric {figs['metric_clean']:.4f} -> {figs['metric_spliced']:.4f} "
              f"({seconds:.0f} s)", flush=True)
    record["total_seconds"] = old["total_seconds"] if old else round(time.time() - t0, 1)
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    (out / "README.md").write_text(card(record))
    return record


def card(record: dict) -> str:
    """The folder's README (model card) from ``training.json``'s dict."""
    cfg = record["config"]
    rows = []
    for name, d in record["dictionaries"].items():
        f = d["figures"]
        for lf in f["layers"]:
            rows.append(f"| {name} | {lf['layer']} | {lf['n_features']} | {lf['fvu']:.4f} | "
                        f"{lf['l0']:.1f} | {lf['dead']:.1%} |")
    summary = []
    for name, d in record["dictionaries"].items():
        f = d["figures"]
        summary.append(f"| {name} | {d['kind']} | {d['features_per_layer']} | {f['fvu']:.4f} | "
                       f"{f['l0']:.1f} | {f['dead']:.1%} | {f['loss_clean']:.4f} | "
                       f"{f['loss_spliced']:.4f} | {f['loss_ioi_clean']:.4f} | "
                       f"{f['loss_ioi_spliced']:.4f} | {f['metric_clean']:.3f} | "
                       f"{f['metric_spliced']:.3f} | {f['train_seconds']:.0f} |")
    return f"""# Transcoders for gpt2-ioi-bpe

Sparse dictionaries for the shipped `gpt2-ioi-bpe` model (4 layers, d_model 96), so that
attribution graphs and feature circuits run offline out of the box:

* `transcoders.safetensors`: per-layer transcoders (a `TranscoderSet`), {cfg['features']}
  {cfg['activation']} features per layer; each reads its layer's MLP input after `ln_2` and
  predicts that MLP's output.
* `clt.safetensors`: a cross-layer transcoder, {cfg['clt_features']} features per layer; the
  features of layer l read its MLP input and write to the MLP outputs of layers l..3.

Both are in the engine's format (safetensors, the config and these figures in the metadata):

```python
from acdc_engine.features import shipped_transcoders
tc = shipped_transcoders()              # or shipped_transcoders(kind="clt")
```

## Figures (held-out: the corpus' last {cfg['n_eval']} lines, {record['eval_tokens']} tokens)

FVU: fraction of variance of the MLP output unexplained; L0: active features per token; dead:
features never active on the held-out tokens; loss: next-token cross-entropy of the model and
of the replacement model (every MLP replaced, no error term); metric: `ioi-names`' default
metric ({cfg['n_task']} examples), the model's and the replacement model's; IOI loss: the
next-token loss on {record.get('ioi_sentences', cfg['n_task'])} held-out `ioi-names` sentences
with their answers. The model was trained on IOI sentences only (its training loss there:
0.81), so its loss on the mixed corpus (word lists, numbers, filler) is high; what matters is
the gap to the spliced loss.

| dictionary | kind | features/layer | FVU | L0 | dead | loss | loss spliced | IOI loss | \
IOI loss spliced | metric | metric spliced | train s |
|---|---|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(summary)}

(`train s`: wall-clock seconds of this run on its machine.)

Per layer:

| dictionary | layer | features | FVU | L0 | dead |
|---|---|---|---|---|---|
{chr(10).join(rows)}

## Training

Corpus: `{record['corpus']}` ({record['train_tokens']} training tokens; every other line starts
with BOS, whose own position is left out). Loss: reconstruction error over the target's variance
plus L1 of the activations times their decoder norms (coefficient {cfg['sparsity']}; the CLT
{cfg['clt_sparsity']}, its decoder norm over all the layers a feature writes to); Adam, lr
{cfg['lr']}, {cfg['steps']} steps (CLT {cfg['clt_steps']}) of {cfg['batch_size']} tokens, seed
{cfg['seed']}, one CPU thread: deterministic. Total {record['total_seconds']:.0f} s.
Reproduce: `python plugins/acdc_builtins/models/train_gpt2_ioi_bpe_transcoders.py`.
"""


if __name__ == "__main__":
    main()
