"""Train ``tiny-ioi``: the small GPT-2 that ships with acdc-engine.

A 4-layer, 4-head, 64-wide GPT-2 (``transformers.GPT2LMHeadModel``) with a
word-level tokenizer, trained from scratch on the synthetic IOI task of
``acdc_tasks.ioi`` ("When Mary and John went to the store , John gave a drink
to" -> " Mary"), so that ``acdc discover`` has a model that does a known task
and that works offline.

Usage (from the repository root; 1-3 minutes on 2 CPU cores)::

    python plugins/acdc_builtins/models/train_tiny_ioi.py
    python plugins/acdc_builtins/models/train_tiny_ioi.py --steps=1000 --lr=1e-3 --out_dir=/tmp/tiny

Every field of ``TrainConfig`` can be overridden as ``--name=value``.  The
script writes, into ``out_dir`` (default: ``tiny-ioi/`` next to this file):

* ``config.json``, ``generation_config.json``, ``model.safetensors``
  (``save_pretrained``),
* ``tokenizer.json``, ``tokenizer_config.json`` (loadable with
  ``AutoTokenizer.from_pretrained``),
* ``training.json`` (recipe, final loss, held-out metrics, timings, versions),
* ``README.md`` (a model card with the same numbers).

Tokenizer: ``tokenizers`` ``WordLevel`` model with a ``WhitespaceSplit``
pre-tokenizer over ``acdc_tasks.ioi.vocabulary()`` plus the special tokens
``<unk>`` (0), ``<pad>`` (1), ``<bos>`` (2).  No BOS is prepended.  Because
the split is on whitespace, ``" Mary"`` and ``"Mary"`` are the same single
token.

Training data: fresh random IOI sentences (clean prompt + answer word) each
step, excluding every prompt of the held-out evaluation set; next-token
cross-entropy on all positions, with the answer position weighted by
``answer_weight``.  Evaluation: ``n_eval`` held-out pairs from a different
seed; accuracy is argmax over the whole vocabulary at the last prompt position.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
try:  # installed package, or running from the repository
    from acdc_tasks import ioi
except ImportError:  # pragma: no cover - plain checkout, not installed
    sys.path.insert(0, str(REPO_ROOT / "tasks"))
    from acdc_tasks import ioi

SPECIAL_TOKENS = ("<unk>", "<pad>", "<bos>")
UNK_ID, PAD_ID, BOS_ID = 0, 1, 2


@dataclass
class TrainConfig:
    # model
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 64
    n_positions: int = 32
    # optimisation
    steps: int = 600
    batch_size: int = 128
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.05
    betas: tuple = (0.9, 0.98)
    grad_clip: float = 1.0
    answer_weight: float = 5.0  # loss weight of the answer position vs other positions
    # data / eval
    seed: int = 0
    eval_seed: int = 1_000_003  # held-out pairs: a seed no training batch uses
    n_eval: int = 2000
    log_every: int = 100
    threads: int = 2
    out_dir: str = str(HERE / "tiny-ioi")


# --------------------------------------------------------------------------- tokenizer


def build_tokenizer(model_max_length: int):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ioi.vocabulary()
    vocab = {tok: i for i, tok in enumerate(list(SPECIAL_TOKENS) + words)}
    assert vocab["<unk>"] == UNK_ID and vocab["<pad>"] == PAD_ID and vocab["<bos>"] == BOS_ID
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<bos>",
        eos_token="<bos>",  # GPT-2 style: one token for BOS and EOS
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )


def encode_word(tokenizer, word: str) -> int:
    ids = tokenizer(word, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1 and ids[0] != UNK_ID, (word, ids)
    return ids[0]


# --------------------------------------------------------------------------- data


def encode_batch(tokenizer, pairs: list[dict], with_answer: bool, key: str = "clean"):
    """Right-padded ids, attention mask and index of the last prompt token."""
    seqs = []
    for p in pairs:
        ids = tokenizer(p[key], add_special_tokens=False)["input_ids"]
        if with_answer:
            ids = ids + [encode_word(tokenizer, p["answer"])]
        seqs.append(ids)
    width = max(len(s) for s in seqs)
    input_ids = torch.full((len(seqs), width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        input_ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    lengths = mask.sum(1)
    last_prompt = lengths - (2 if with_answer else 1)
    return input_ids, mask, last_prompt


def training_batches(cfg: TrainConfig, exclude: set[str]):
    rng = random.Random(cfg.seed)
    while True:
        pairs = []
        while len(pairs) < cfg.batch_size:
            for p in ioi.make_pairs(cfg.batch_size, seed=rng.getrandbits(48)):
                if p["clean"] not in exclude:
                    pairs.append(p)
        yield pairs[: cfg.batch_size]


def lr_at(cfg: TrainConfig, step: int) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * frac))


# --------------------------------------------------------------------------- eval


@torch.no_grad()
def evaluate(model, tokenizer, pairs: list[dict], batch_size: int = 500) -> dict:
    model.eval()
    stats = {k: [] for k in ("clean_correct", "clean_ld", "corr_correct", "corr_ld", "corr_pref")}
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i : i + batch_size]
        ans = torch.tensor([encode_word(tokenizer, p["answer"]) for p in chunk])
        wrong = torch.tensor([encode_word(tokenizer, p["wrong_answer"]) for p in chunk])
        rows = torch.arange(len(chunk))
        for key, prefix in (("clean", "clean"), ("corrupted", "corr")):
            ids, mask, last = encode_batch(tokenizer, chunk, with_answer=False, key=key)
            logits = model(input_ids=ids, attention_mask=mask).logits[rows, last]
            ld = logits[rows, ans] - logits[rows, wrong]
            stats[f"{prefix}_correct"].append((logits.argmax(-1) == ans).float())
            stats[f"{prefix}_ld"].append(ld)
            if prefix == "corr":
                stats["corr_pref"].append((ld > 0).float())
    cat = {k: torch.cat(v) for k, v in stats.items() if v}
    model.train()
    return {
        "n": len(pairs),
        "clean_accuracy": cat["clean_correct"].mean().item(),
        "clean_logit_diff": cat["clean_ld"].mean().item(),
        "clean_logit_diff_std": cat["clean_ld"].std().item(),
        "corrupted_accuracy": cat["corr_correct"].mean().item(),
        "corrupted_logit_diff": cat["corr_ld"].mean().item(),
        "corrupted_answer_preferred": cat["corr_pref"].mean().item(),
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str], config=None):
    """``--name=value`` arguments over the fields of ``config`` (a dataclass; default this
    script's ``TrainConfig``); the other training scripts use it too."""
    config = TrainConfig if config is None else config
    cfg = config()
    fields = {f.name: f for f in dataclasses.fields(config)}
    for arg in argv:
        if not arg.startswith("--") or "=" not in arg:
            raise SystemExit(f"expected --name=value, got {arg!r}")
        name, value = arg[2:].split("=", 1)
        if name not in fields:
            raise SystemExit(f"unknown config field {name!r}; known: {sorted(fields)}")
        current = getattr(cfg, name)
        if isinstance(current, tuple):
            parsed = tuple(float(v) for v in value.split(","))
        else:
            parsed = type(current)(value)
        setattr(cfg, name, parsed)
    return cfg


def write_readme(out: Path, cfg: TrainConfig, record: dict) -> None:
    ev = record["eval"]
    v = record["versions"]
    text = f"""# tiny-ioi

A tiny GPT-2 (`GPT2LMHeadModel`, {record["n_params"]:,} parameters: {cfg.n_layer} layers, \
{cfg.n_head} heads, d_model {cfg.n_embd}, context {cfg.n_positions}, vocabulary \
{record["vocab_size"]}) trained from scratch by the acdc-engine authors on the synthetic \
indirect-object-identification task of `acdc_tasks.ioi`, e.g.

    When Mary and John went to the store , John gave a drink to  ->  " Mary"

It is the default model of `acdc discover`, so that circuit discovery works offline.

The tokenizer is word level (`tokenizers` `WordLevel` + `WhitespaceSplit`; special tokens \
`<unk>`=0, `<pad>`=1, `<bos>`=2; no BOS is prepended). Punctuation is a separate word and \
`" Mary"` is one token. It only knows the {record["vocab_size"] - 3} words of \
`acdc_tasks.ioi.vocabulary()`; anything else is `<unk>`.

Load it like any Hugging Face checkpoint, by path:

```python
from transformers import AutoTokenizer, GPT2LMHeadModel
model = GPT2LMHeadModel.from_pretrained(path)
tokenizer = AutoTokenizer.from_pretrained(path)
```

## Recipe

- data: fresh random IOI sentences (prompt + answer word) every step, from \
{len(ioi.TEMPLATES)} templates; every held-out evaluation prompt is excluded from training
- loss: next-token cross-entropy on all positions, answer position weighted \
x{cfg.answer_weight:g}
- optimiser: AdamW, lr {cfg.lr:g}, betas {tuple(cfg.betas)}, weight decay \
{cfg.weight_decay:g} (matrices only), grad clip {cfg.grad_clip:g}; {cfg.warmup_steps} warm-up \
steps, then cosine decay to {cfg.min_lr:g}
- {cfg.steps} steps of batch {cfg.batch_size}, dropout 0, seed {cfg.seed}, \
{cfg.threads} CPU threads; {record["train_time_s"]:.0f} s on CPU (torch {v["torch"]}, \
transformers {v["transformers"]})
- final training loss {record["final_loss"]:.4f} (answer position: \
{record["final_answer_loss"]:.4f}; the rest is mostly the irreducible loss of the randomly \
drawn names, places and objects)

## Results ({ev["n"]} held-out pairs, seed {cfg.eval_seed})

| prompt | accuracy (argmax over whole vocabulary = IO) | mean logit diff (IO - S) |
|---|---|---|
| clean | {ev["clean_accuracy"]:.2%} | {ev["clean_logit_diff"]:.2f} |
| corrupted (ABC: three other names) | {ev["corrupted_accuracy"]:.2%} | \
{ev["corrupted_logit_diff"]:.2f} |

On the corrupted prompts neither the IO nor the subject occurs, so the model is at chance \
between the two (IO preferred over S in {ev["corrupted_answer_preferred"]:.1%} of pairs). \
All numbers are also in `training.json`.

## Regenerate

From the repository root (deterministic for a given torch version; writes this directory):

```bash
python plugins/acdc_builtins/models/train_tiny_ioi.py
```
"""
    (out / "README.md").write_text(text)


def _display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> dict:
    import transformers
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    tokenizer = build_tokenizer(cfg.n_positions)
    vocab_size = len(tokenizer)
    model_cfg = GPT2Config(
        vocab_size=vocab_size,
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=BOS_ID,
        eos_token_id=BOS_ID,
        pad_token_id=PAD_ID,
    )
    model = GPT2LMHeadModel(model_cfg)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"tiny-ioi: {n_params:,} parameters, vocab {vocab_size}", flush=True)

    eval_pairs = ioi.make_pairs(cfg.n_eval, seed=cfg.eval_seed)
    exclude = {p["clean"] for p in eval_pairs}

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=tuple(cfg.betas),
    )

    batches = training_batches(cfg, exclude)
    t0 = time.perf_counter()
    history = []
    loss_ema = ans_ema = None
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        ids, mask, last = encode_batch(tokenizer, next(batches), with_answer=True)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]
        targets = ids[:, 1:].clone()
        targets[mask[:, 1:] == 0] = -100
        tok_loss = F.cross_entropy(
            logits.reshape(-1, vocab_size), targets.reshape(-1), reduction="none"
        ).view_as(targets)
        weights = (targets != -100).float()
        rows = torch.arange(ids.shape[0])
        weights[rows, last] = cfg.answer_weight  # predicting the answer from the last prompt token
        loss = (tok_loss * weights).sum() / weights.sum()
        ans_loss = tok_loss[rows, last].mean()

        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()

        lv, av = loss.item(), ans_loss.item()
        loss_ema = lv if loss_ema is None else 0.95 * loss_ema + 0.05 * lv
        ans_ema = av if ans_ema is None else 0.95 * ans_ema + 0.05 * av
        if (step + 1) % cfg.log_every == 0 or step == cfg.steps - 1:
            elapsed = time.perf_counter() - t0
            ev = evaluate(model, tokenizer, eval_pairs[:500])
            history.append(
                {
                    "step": step + 1,
                    "loss": loss_ema,
                    "answer_loss": ans_ema,
                    "eval500_clean_accuracy": ev["clean_accuracy"],
                    "eval500_clean_logit_diff": ev["clean_logit_diff"],
                    "elapsed_s": elapsed,
                }
            )
            print(
                f"step {step + 1:5d} | loss {loss_ema:.4f} | answer loss {ans_ema:.4f} "
                f"| lr {lr_at(cfg, step):.2e} | eval acc {ev['clean_accuracy']:.3f} "
                f"ld {ev['clean_logit_diff']:.2f} | {elapsed:.0f}s",
                flush=True,
            )
    train_time = time.perf_counter() - t0

    metrics = evaluate(model, tokenizer, eval_pairs)
    print(json.dumps(metrics, indent=2), flush=True)

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # Name the generic fast-tokenizer class so that older transformers (4.x) load it too.
    tok_cfg_path = out / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text())
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2) + "\n")

    record = {
        "model": "tiny-ioi",
        "task": "acdc_tasks.ioi",
        "config": dataclasses.asdict(cfg) | {"out_dir": _display_path(out)},
        "seed": cfg.seed,
        "steps": cfg.steps,
        "n_params": n_params,
        "vocab_size": vocab_size,
        "final_loss": loss_ema,
        "final_answer_loss": ans_ema,
        "eval": metrics,
        "eval_seed": cfg.eval_seed,
        "train_time_s": train_time,
        "history": history,
        "versions": {
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
    }
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    write_readme(out, cfg, record)
    print(f"saved to {out} ({train_time:.0f}s training)", flush=True)
    return record


if __name__ == "__main__":
    main()
