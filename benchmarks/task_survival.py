"""How much of each literature task survives each tokenizer (issue 10, item 4).

    python benchmarks/task_survival.py            # markdown table on stdout
    python benchmarks/task_survival.py -n 64 --seed 0

For every literature task (``acdc_tasks.literature``) and every tokenizer: the two trained
offline on the tasks' corpus (``byte-bpe``: GPT-2/Pythia-style byte-level BPE; ``sentencepiece``:
Llama/Gemma-style Metaspace BPE), a T5-style Metaspace Unigram, a small byte-level BPE where
many words split, a SentencePiece-style one that splits digits one by one (as Llama's and
Gemma's do), and the tokenizer of every shipped model, it prints the task's survival notes
(``names: 23 of 100 single-token``, ``examples: 64 of 64 kept``) or the reason it refuses.
Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402


def tokenizers() -> dict:
    """name -> tokenizer: the trained ones, then the shipped models'."""
    from transformers import AutoTokenizer

    from acdc_engine.plugins import registry
    from acdc_tasks.literature.corpus import corpus, train_tokenizer

    lines = corpus(100)
    out = {
        "byte-bpe (1800)": train_tokenizer("byte-bpe", 1800, lines=lines),
        "sentencepiece (2400)": train_tokenizer("sentencepiece", 2400, lines=lines),
        "byte-bpe small (900)": train_tokenizer("byte-bpe", 900, lines=lines),
        "unigram (2400)": train_tokenizer("unigram", 2400, lines=lines),
        "sentencepiece digits (2400)": train_tokenizer("sentencepiece", 2400, lines=lines,
                                                       digits="single"),
    }
    for name, shipped in sorted(registry().shipped.items()):
        if not shipped.path.is_dir():
            print(f"# {name}: not built (no {shipped.path})")
            continue
        try:
            out[f"shipped {name}"] = AutoTokenizer.from_pretrained(str(shipped.path))
        except (OSError, ValueError) as err:  # a shipped model without a tokenizer
            print(f"# {name}: no tokenizer ({err})")
    return out


def survival(task: str, tok, n: int, seed: int) -> str:
    """The task's notes in one cell, or its refusal's reason."""
    from acdc_engine.errors import TaskDataError
    from acdc_tasks.literature import GENERATORS

    try:
        rows = GENERATORS[task](n, seed, tokenizer=tok)
    except TaskDataError as err:
        reason = err.problems[0]
        return "refused: " + (reason if len(reason) < 90 else reason[:87] + "...")
    notes = {k: v for k, v in rows.notes.items() if k != "tokenizer"}
    return "; ".join(f"{k}: {v}" for k, v in notes.items())


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=64, help="examples asked of each task")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from acdc_tasks.literature import GENERATORS

    t0 = time.perf_counter()
    toks = tokenizers()
    print(f"# task survival: {args.n} examples asked, seed {args.seed}\n")
    print("| task | tokenizer | vocab | survival |")
    print("|---|---|---|---|")
    for task in GENERATORS:
        for name, tok in toks.items():
            cell = survival(task, tok, args.n, args.seed).replace("|", "\\|")
            print(f"| {task} | {name} | {len(tok)} | {cell} |")
    print(f"\n({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
