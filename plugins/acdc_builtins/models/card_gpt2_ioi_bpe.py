"""The model card of ``gpt2-ioi-bpe``: discovery measurements on the saved model and the
README written from ``training.json``. Used by :mod:`train_gpt2_ioi_bpe` (``--measure_only=1``
re-runs only this part)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from train_gpt2_ioi_bpe import NAME, encode, ioi_names


def measure(out: Path, threads: int, n_examples: int = 64) -> dict:
    """Discovery on the saved model: ``ioi-names`` with EAP-IG (the CLI's default) and EAP,
    then every literature task with EAP: examples surviving tokenization (the task's notes),
    edges kept (smallest budget reaching 0.8 normalized faithfulness), faithfulness, time."""
    from acdc_engine.api import discover, load_model, load_task

    from acdc_tasks.plugin import LITERATURE

    torch.set_num_threads(threads)
    lm = load_model(str(out), device="cpu")
    runs = [("ioi-names", "eap-ig")] + [(t, "eap") for t in LITERATURE]
    results = []
    for task, method in runs:
        row = {"task": task, "method": method}
        try:
            rows = load_task(task).load_rows(n_examples, 0, tokenizer=lm.tokenizer)
            row["survival"] = dict(getattr(rows, "notes", {}))
            t0 = time.perf_counter()
            r = discover(lm, task, method, n_examples=n_examples, threads=threads,
                         track=False, render=False, progress=False)
            row.update(edges=r.circuit.number_of_edges(), of_edges=r.graph.n_edges,
                       faithfulness=r.faithfulness.normalized, metric=r.params["metric"],
                       metric_full=r.faithfulness.full, metric_empty=r.faithfulness.empty,
                       wall_s=time.perf_counter() - t0, warnings=list(r.warnings))
        except Exception as e:  # a task this tokenizer cannot serve: report why
            row["error"] = f"{type(e).__name__}: {e}".splitlines()[0][:300]
        print(json.dumps(row), flush=True)
        results.append(row)
    budget = results[0].get("edges", 50)  # EAP-IG's circuit size: both methods at that size
    fixed = {}
    for method in ("eap-ig", "eap"):
        r = discover(lm, "ioi-names", method, n_examples=n_examples, n_edges=budget, curve=False,
                     threads=threads, track=False, render=False, progress=False)
        fixed[method] = {"edges": r.circuit.number_of_edges(),
                         "faithfulness": r.faithfulness.normalized}
    print(json.dumps({"fixed_budget": budget, **fixed}), flush=True)
    return {"n_examples": n_examples, "threads": threads, "runs": results,
            "fixed_budget": {"n_edges": budget, **fixed}}


def _discovery_table(disc: dict) -> str:
    lines = ["| task | method | examples kept | words kept | metric (full / empty) | edges "
             "kept | faithfulness | time |", "|---|---|---|---|---|---|---|---|"]
    for r in disc["runs"]:
        surv = r.get("survival", {})
        words = "; ".join(f"{k} {v}" for k, v in surv.items()
                          if k not in ("examples", "tokenizer", "dropped"))
        if "error" in r:
            lines.append(f"| {r['task']} | {r['method']} | {surv.get('examples', '-')} | "
                         f"{words or '-'} | - | - | - | refused: {r['error']} |")
            continue
        lines.append(
            f"| {r['task']} | {r['method']} | {surv.get('examples', '-')} | {words} | "
            f"{r['metric']} ({r['metric_full']:.3g} / {r['metric_empty']:.3g}) | "
            f"{r['edges']} of {r['of_edges']} | {r['faithfulness']:.3f}"
            f"{' (warned)' if r['warnings'] else ''} | {r['wall_s']:.1f} s |")
    return "\n".join(lines) + (
        "\n\n(warned): the engine warned about this faithfulness: the full model and the empty "
        "circuit nearly equal, their gap within the noise of the examples, or the value far "
        "outside [0, 1] (docs/evidence.md); normalized faithfulness then means little."
        if any(r.get("warnings") for r in disc["runs"]) else "")


def _fixed_budget(disc: dict | None) -> str:
    fb = (disc or {}).get("fixed_budget")
    if not fb:
        return ""
    ig, eap = fb["eap-ig"], fb["eap"]
    return (f"\nAt the same budget (top {fb['n_edges']} edges by |score|, {disc['n_examples']} "
            f"examples), the EAP-IG circuit keeps {ig['faithfulness']:.3f} normalized "
            f"faithfulness and the EAP circuit {eap['faithfulness']:.3f}: with a logit "
            f"difference of ~14 the first-order (EAP) scores rank edges poorly on this model; "
            f"prefer EAP-IG (the default).\n")


def _longest(out: Path) -> int:
    """The longest ``ioi-names`` training sequence (prompt + answer) in tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    return max(len(encode(tok, t.replace("[A]", "Mary").replace("[B]", "John")
                          .replace("[PLACE]", "store").replace("[OBJECT]", "ring"))) + 1
               for t in ioi_names.TEMPLATES)


def write_card(out: Path) -> None:
    """README.md from ``training.json`` (and its ``discovery`` figures, when measured)."""
    rec = json.loads((out / "training.json").read_text())
    cfg, ev, v = rec["config"], rec["eval"], rec["versions"]
    disc = rec.get("discovery")
    table = _discovery_table(disc) if disc else "(not measured yet: run with --measure_only=1)"
    cpu = f" ({rec['train_cpu_s']:.0f} s of CPU time)" if "train_cpu_s" in rec else ""
    merges = (f" (BPE ran out of merges at {rec['vocab_size']})"
              if rec["vocab_size"] < cfg["vocab_size"] else "")
    hist = " -> ".join(f"{h['eval300_clean_accuracy']:.2f}" for h in rec["history"])
    text = f"""# {NAME}

A small GPT-2 (`GPT2LMHeadModel`, {rec["n_params"]:,} parameters: {cfg["n_layer"]} layers, \
{cfg["n_head"]} heads, d_model {cfg["n_embd"]}, context {cfg["n_positions"]}, vocabulary \
{rec["vocab_size"]}) with a **byte-level BPE** tokenizer, trained from scratch by the \
acdc-engine authors on indirect object identification with real first names (the \
`ioi-names` task, Wang et al. 2022's ABBA and BABA templates, `acdc_tasks.literature`):

    Then, John and Mary went to the store. John gave a ring to  ->  " Mary"   (not " John")

It is the realistic-style counterpart of `tiny-ioi` (word-level toy vocabulary): sub-word \
tokens, real names, places and objects, and still small enough that discovery runs in seconds:

```bash
acdc discover --model {NAME} --task ioi-names
```

## Tokenizer

`tokenizers` BPE behind GPT-2's `ByteLevel` pre-tokenizer and decoder: every byte is in the \
alphabet, so any text round-trips (no unknown tokens); runs of digits are split into pairs \
before BPE (`" 1732"` -> `" 17"`, `"32"`, as GPT-2's merges treat most years). One special \
token, `<|endoftext|>` (id {rec.get("eot_id", 0)}), serves as BOS, EOS, UNK and padding; \
no BOS is prepended (as the engine tokenizes prompts). Trained offline on \
`acdc_tasks.literature.corpus.corpus()` (every literature task's prompts, its word lists with \
and without a leading space, two-digit numbers, filler) plus a few generic sentences, target \
vocabulary {cfg["vocab_size"]}{merges}. Words are \
single tokens with their leading space (`" Mary"`), not without it.

Load it by name (`load_model("{NAME}")`) or like any Hugging Face checkpoint, by path:

```python
from transformers import AutoTokenizer, GPT2LMHeadModel
model = GPT2LMHeadModel.from_pretrained(path)
tokenizer = AutoTokenizer.from_pretrained(path)
```

## Recipe

- data: fresh random `ioi-names` prompts + answer every step (uniform over its \
{len(ioi_names.TEMPLATES)} templates, {rec["survival"].get("names", "?")} names, \
{rec["survival"].get("places", "?")} places, {rec["survival"].get("objects", "?")} objects); \
every held-out clean prompt is excluded from training; sequences (prompt + answer) are \
{_longest(out)} tokens long at most, so position embeddings beyond that are untrained (the \
other tasks below run longer prompts through them)
- loss: next-token cross-entropy on all positions, answer position weighted \
x{cfg["answer_weight"]:g}
- optimiser: AdamW, lr {cfg["lr"]:g}, betas {tuple(cfg["betas"])}, weight decay \
{cfg["weight_decay"]:g} (matrices only), grad clip {cfg["grad_clip"]:g}; \
{cfg["warmup_steps"]} warm-up steps, then cosine decay to {cfg["min_lr"]:g}
- {cfg["steps"]} steps of batch {cfg["batch_size"]}, dropout 0, seed {cfg["seed"]}, \
{cfg["threads"]} CPU thread(s); {rec["train_time_s"]:.0f} s wall on a shared, oversubscribed \
2-core CPU{cpu} (torch {v["torch"]}, transformers {v["transformers"]})
- final training loss {rec["final_loss"]:.4f} (answer position: \
{rec["final_answer_loss"]:.4f}; the rest is mostly the irreducible loss of the randomly drawn \
names, places and objects); held-out accuracy every {cfg["log_every"]} steps (300 rows): {hist}

## Results ({ev["n"]} held-out rows of `ioi-names`, seed {cfg["eval_seed"]})

| prompt | accuracy (argmax over the whole vocabulary = IO) | mean logit diff (IO - S) |
|---|---|---|
| clean | {ev["clean_accuracy"]:.2%} (ABBA {ev["clean_accuracy_abba"]:.2%}, BABA \
{ev["clean_accuracy_baba"]:.2%}) | {ev["clean_logit_diff"]:.2f} \
(sd {ev["clean_logit_diff_std"]:.2f}; > 0 in {ev["clean_logit_diff_positive"]:.1%}) |
| corrupted (ABC: three other names) | {ev["corrupted_accuracy"]:.2%} | \
{ev["corrupted_logit_diff"]:.2f} |

On the corrupted prompts neither the IO nor the subject occurs, so the model has no reason to \
prefer either (IO preferred over S in {ev["corrupted_answer_preferred"]:.1%} of rows).

## Discovery on it

`acdc_engine.api.discover` with the default target search (smallest budget reaching 0.8 \
normalized faithfulness), {disc["n_examples"] if disc else "?"} examples, seed 0, \
{disc["threads"] if disc else "?"} CPU thread(s); the model was trained on `ioi-names` only, \
so the other literature tasks show what survives its tokenizer and whether a circuit is found \
for a behaviour the model barely has (a metric near 0 for the full model means no behaviour to \
explain; faithfulness is then noise). Time is the whole `discover` call with the model loaded.

{table}
{_fixed_budget(disc)}
## Regenerate

From the repository root (deterministic for a given torch version; writes this directory):

```bash
python plugins/acdc_builtins/models/train_gpt2_ioi_bpe.py                   # train + measure
python plugins/acdc_builtins/models/train_gpt2_ioi_bpe.py --measure_only=1  # measure again
```

All numbers are also in `training.json`.
"""
    (out / "README.md").write_text(text)
