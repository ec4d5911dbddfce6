"""Train ``gpt2-ioi-bpe``: a small GPT-2 with a byte-level BPE tokenizer, on IOI with real names.

A 4-layer, 4-head, 96-wide ``transformers.GPT2LMHeadModel`` trained from scratch on
``ioi-names`` (:mod:`acdc_tasks.literature.ioi_names`: Wang et al. 2022's ABBA/BABA templates,
100 first names), with a GPT-2-style byte-level BPE tokenizer trained offline on the literature
tasks' corpus, so that discovery has a realistic-style model that still runs in seconds.

Usage (from the repository root; ~20 minutes on one thread of a busy shared CPU)::

    python plugins/acdc_builtins/models/train_gpt2_ioi_bpe.py                  # train + measure
    python plugins/acdc_builtins/models/train_gpt2_ioi_bpe.py --measure_only=1 # measure, card
    python plugins/acdc_builtins/models/train_gpt2_ioi_bpe.py --steps=200 --out_dir=/tmp/g

Every ``TrainConfig`` field can be overridden as ``--name=value``. Writes into ``out_dir``
(default ``gpt2-ioi-bpe/`` next to this file) the ``save_pretrained`` files of the model and
tokenizer, ``training.json`` (recipe, losses, held-out results, discovery figures, versions)
and ``README.md`` (the model card, from ``training.json``).

Tokenizer: BPE behind GPT-2's ``ByteLevel`` pre-tokenizer and decoder (any text round-trips),
runs of digits split into pairs first (``" 1732"`` -> ``" 17"``, ``"32"``), ``<|endoftext|>``
as BOS/EOS/UNK/padding; trained on :func:`acdc_tasks.literature.corpus.corpus` plus
:data:`FILLER`. Training: fresh random IOI rows each step, no held-out prompt among them;
next-token cross-entropy on all positions, the answer position weighted ``answer_weight``.
Evaluation: ``n_eval`` held-out ``ioi-names`` rows from ``eval_seed``; accuracy is the argmax
over the whole vocabulary at the last position.
"""

from __future__ import annotations

import dataclasses
import json
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
NAME = "gpt2-ioi-bpe"
try:  # installed package, or running from the repository
    from acdc_tasks.literature import corpus, ioi_names
except ImportError:  # pragma: no cover - plain checkout, not installed
    sys.path.insert(0, str(REPO_ROOT / "tasks"))
    from acdc_tasks.literature import corpus, ioi_names

# the schedule, argument parsing and paths are tiny-ioi's (same recipe shape)
from train_tiny_ioi import _display_path, lr_at  # noqa: E402
from train_tiny_ioi import parse_args as _parse_args  # noqa: E402

EOT = "<|endoftext|>"

#: generic text added to the task corpus, so the vocabulary has ordinary words too
FILLER: tuple[str, ...] = (
    "Yesterday the children played in the garden until it was dark.",
    "We should meet at the station at nine, then take the train to the city.",
    "My brother and my sister live in a small house near the river.",
    "The teacher asked the students to read the first chapter before Monday.",
    "There were three apples, two oranges and a banana on the kitchen table.",
    "When the phone rang, everybody in the room turned around to look.",
    "It is important to write clear code and to test it carefully.",
    "The museum opened a new exhibition about the history of the region.",
    "Please send me the report by Friday, and call me if anything changes.",
    "They walked along the beach, talking about their plans for the summer.",
)


@dataclass
class TrainConfig:
    # tokenizer
    vocab_size: int = 2048
    # model
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 96
    n_positions: int = 128
    # optimisation
    steps: int = 1500
    batch_size: int = 64
    lr: float = 2e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.05
    betas: tuple = (0.9, 0.98)
    grad_clip: float = 1.0
    answer_weight: float = 5.0  # loss weight of the answer position vs other positions
    # data / eval
    seed: int = 0
    eval_seed: int = 1_000_003  # held-out rows: a seed no training batch uses
    n_eval: int = 2000
    log_every: int = 100
    threads: int = 1  # 1 is faster than 2 on a shared 2-core machine
    out_dir: str = str(HERE / NAME)
    measure_only: int = 0  # 1: skip training, measure discovery on out_dir, rewrite the card


# --------------------------------------------------------------------------- tokenizer


def build_tokenizer(cfg: TrainConfig):
    """The byte-level BPE tokenizer (see the module docstring), trained on the task corpus."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r" ?\d\d"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=cfg.vocab_size, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tk.train_from_iterator(corpus.corpus() + list(FILLER) * 5, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=EOT, eos_token=EOT,
                                   unk_token=EOT, pad_token=EOT,
                                   model_max_length=cfg.n_positions,
                                   clean_up_tokenization_spaces=False)


def encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def answer_id(tokenizer, word: str) -> int:
    ids = encode(tokenizer, word)
    assert len(ids) == 1, (word, ids)  # ioi-names keeps single-token names only
    return ids[0]


# --------------------------------------------------------------------------- data


def encode_batch(tokenizer, rows: list[dict], with_answer: bool, key: str = "clean"):
    """Right-padded ids ``[B, T]``, attention mask ``[B, T]`` and the index of the last prompt
    token ``[B]`` (where the answer is predicted)."""
    prompts = tokenizer([r[key] for r in rows], add_special_tokens=False)["input_ids"]
    answers = tokenizer([r["answer"] for r in rows], add_special_tokens=False)["input_ids"]
    assert not with_answer or all(len(a) == 1 for a in answers)  # single-token answers
    seqs = [list(p) + (list(a) if with_answer else []) for p, a in zip(prompts, answers)]
    width = max(len(s) for s in seqs)
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(seqs), width), pad, dtype=torch.long)  # [B, T]
    mask = torch.zeros((len(seqs), width), dtype=torch.long)  # [B, T]
    for i, s in enumerate(seqs):
        input_ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    last_prompt = mask.sum(1) - (2 if with_answer else 1)  # [B]
    return input_ids, mask, last_prompt


def training_batches(cfg: TrainConfig, tokenizer, exclude: set[str]):
    """Fresh IOI rows forever, drawn as ``ioi_names.rows`` draws them (a uniform template,
    two distinct single-token names, a place and an object) but without its per-row checks
    (this tokenizer keeps every word whole), and never a held-out clean prompt."""
    from acdc_tasks.literature.common import single_tokens
    from acdc_tasks.literature.words import FIRST_NAMES, OBJECTS, PLACES

    names, places, objects = (single_tokens(tokenizer, w)[0]
                              for w in (FIRST_NAMES, PLACES, OBJECTS))
    rng = random.Random(cfg.seed)
    while True:
        rows = []
        while len(rows) < cfg.batch_size:
            io, s = rng.sample(names, 2)
            t = ioi_names.TEMPLATES[rng.randrange(len(ioi_names.TEMPLATES))]
            clean = (t.replace("[A]", io).replace("[B]", s)
                     .replace("[PLACE]", rng.choice(places))
                     .replace("[OBJECT]", rng.choice(objects)))
            if clean not in exclude:
                rows.append({"clean": clean, "answer": " " + io})
        yield rows


# --------------------------------------------------------------------------- eval


@torch.no_grad()
def evaluate(model, tokenizer, rows: list[dict], batch_size: int = 250) -> dict:
    """Held-out accuracy (argmax over the vocabulary = IO) and mean logit difference (IO - S)
    on the clean and the corrupted (ABC) prompts; clean accuracy per template order."""
    was_training = model.training
    model.eval()
    stats: dict[str, list] = {k: [] for k in ("clean_ok", "clean_ld", "corr_ok", "corr_ld")}
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        ans = torch.tensor([answer_id(tokenizer, r["answer"]) for r in chunk])  # [B]
        wrong = torch.tensor([answer_id(tokenizer, r["wrong_answer"]) for r in chunk])  # [B]
        idx = torch.arange(len(chunk))
        for key, pre in (("clean", "clean"), ("corrupted", "corr")):
            ids, mask, last = encode_batch(tokenizer, chunk, with_answer=False, key=key)
            logits = model(input_ids=ids, attention_mask=mask).logits[idx, last]  # [B, V]
            stats[f"{pre}_ok"].append((logits.argmax(-1) == ans).float())
            stats[f"{pre}_ld"].append(logits[idx, ans] - logits[idx, wrong])
    cat = {k: torch.cat(v) for k, v in stats.items()}
    order = torch.tensor([r["order"] == "ABBA" for r in rows])
    model.train(was_training)
    return {
        "n": len(rows),
        "clean_accuracy": cat["clean_ok"].mean().item(),
        "clean_accuracy_abba": cat["clean_ok"][order].mean().item(),
        "clean_accuracy_baba": cat["clean_ok"][~order].mean().item(),
        "clean_logit_diff": cat["clean_ld"].mean().item(),
        "clean_logit_diff_std": cat["clean_ld"].std().item(),
        "clean_logit_diff_positive": (cat["clean_ld"] > 0).float().mean().item(),
        "corrupted_accuracy": cat["corr_ok"].mean().item(),
        "corrupted_logit_diff": cat["corr_ld"].mean().item(),
        "corrupted_answer_preferred": (cat["corr_ld"] > 0).float().mean().item(),
    }


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str]) -> TrainConfig:
    return _parse_args(argv, TrainConfig)


def make_model(cfg: TrainConfig, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    eot = tokenizer.convert_tokens_to_ids(EOT)
    return GPT2LMHeadModel(GPT2Config(
        vocab_size=len(tokenizer), n_positions=cfg.n_positions, n_embd=cfg.n_embd,
        n_layer=cfg.n_layer, n_head=cfg.n_head, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=eot, eos_token_id=eot, pad_token_id=eot))


def make_optimizer(cfg: TrainConfig, model):
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}],
                             lr=cfg.lr, betas=tuple(cfg.betas))


def train(cfg: TrainConfig, model, tokenizer, eval_rows: list[dict]) -> dict:
    """The training loop; returns the final losses, the history and the time taken."""
    opt = make_optimizer(cfg, model)
    batches = training_batches(cfg, tokenizer, {r["clean"] for r in eval_rows})
    vocab = len(tokenizer)
    t0, cpu0, history = time.perf_counter(), time.process_time(), []
    loss_ema = ans_ema = None
    for step in range(cfg.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step)
        ids, mask, last = encode_batch(tokenizer, next(batches), with_answer=True)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1]  # [B, T-1, V]
        targets = ids[:, 1:].clone()  # [B, T-1]
        targets[mask[:, 1:] == 0] = -100
        tok_loss = F.cross_entropy(logits.reshape(-1, vocab), targets.reshape(-1),
                                   reduction="none").view_as(targets)  # [B, T-1]
        weights = (targets != -100).float()
        idx = torch.arange(ids.shape[0])
        weights[idx, last] = cfg.answer_weight  # the answer, predicted at the last prompt token
        loss = (tok_loss * weights).sum() / weights.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        lv, av = loss.item(), tok_loss[idx, last].mean().item()
        loss_ema = lv if loss_ema is None else 0.95 * loss_ema + 0.05 * lv
        ans_ema = av if ans_ema is None else 0.95 * ans_ema + 0.05 * av
        if (step + 1) % cfg.log_every == 0 or step == cfg.steps - 1:
            ev, elapsed = evaluate(model, tokenizer, eval_rows[:300]), time.perf_counter() - t0
            history.append({"step": step + 1, "loss": loss_ema, "answer_loss": ans_ema,
                            "eval300_clean_accuracy": ev["clean_accuracy"],
                            "eval300_clean_logit_diff": ev["clean_logit_diff"],
                            "elapsed_s": elapsed})
            print(f"step {step + 1:5d} | loss {loss_ema:.4f} | answer loss {ans_ema:.4f} | "
                  f"lr {lr_at(cfg, step):.2e} | eval acc {ev['clean_accuracy']:.3f} ld "
                  f"{ev['clean_logit_diff']:.2f} | {elapsed:.0f}s", flush=True)
    return {"final_loss": loss_ema, "final_answer_loss": ans_ema, "history": history,
            "train_time_s": time.perf_counter() - t0, "train_cpu_s": time.process_time() - cpu0}


def save(out: Path, model, tokenizer) -> None:
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    # Name the generic fast-tokenizer class so that older transformers (4.x) load it too.
    path = out / "tokenizer_config.json"
    tok_cfg = json.loads(path.read_text())
    tok_cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    path.write_text(json.dumps(tok_cfg, indent=2) + "\n")


def main(argv: list[str] | None = None) -> dict:
    from card_gpt2_ioi_bpe import measure, write_card

    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(cfg.out_dir)
    if not cfg.measure_only:
        train_and_save(cfg, out)
    record = json.loads((out / "training.json").read_text())
    record["discovery"] = measure(out, cfg.threads)
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    write_card(out)
    print(f"wrote {out / 'README.md'}", flush=True)
    return record


def train_and_save(cfg: TrainConfig, out: Path) -> dict:
    """Train the tokenizer and the model, evaluate, save them with ``training.json``."""
    import transformers

    torch.set_num_threads(cfg.threads)
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    tokenizer = build_tokenizer(cfg)
    model = make_model(cfg, tokenizer)
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{NAME}: {n_params:,} parameters, vocab {len(tokenizer)}", flush=True)
    eval_rows = ioi_names.rows(cfg.n_eval, seed=cfg.eval_seed, tokenizer=tokenizer)
    result = train(cfg, model, tokenizer, eval_rows)
    metrics = evaluate(model, tokenizer, eval_rows)
    print(json.dumps(metrics, indent=2), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    save(out, model, tokenizer)
    record = {
        "model": NAME, "task": "ioi-names (acdc_tasks.literature.ioi_names)",
        "config": dataclasses.asdict(cfg) | {"out_dir": _display_path(out)},
        "n_params": n_params, "vocab_size": len(tokenizer),
        "eot_id": tokenizer.convert_tokens_to_ids(EOT), "survival": dict(eval_rows.notes),
        **result, "eval": metrics,
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__},
    }
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved to {out} ({result['train_time_s']:.0f}s training)", flush=True)
    return record


if __name__ == "__main__":
    main()
