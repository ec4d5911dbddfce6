"""Faithfulness that means nothing is said so, once, on every path (discover, evaluate, the
CLI, the Python API): a full-vs-empty gap within the noise of the examples, and a normalized
faithfulness far outside [0, 1]. Rows of docs/reliability.md (Evidence tools, second round)."""

from __future__ import annotations

import json
import random

import pytest
import torch

from acdc_engine.api.results import FAR_OUTSIDE, faithfulness_warnings
from acdc_engine.evidence.uncertainty import GapNoise

EMOJI = ["😀", "🚀", "🐱", "🔥", "💧", "🎵", "⚽", "🎉", "🎈", "🍕", "🍎", "🌟"]
NOISY = "within the noise of the"


@pytest.fixture(scope="module")
def bpe():
    from acdc_engine import load_model

    return load_model("gpt2-ioi-bpe")


@pytest.fixture(scope="module")
def emoji_pairs(bpe, tmp_path_factory):
    """40 emoji-only prompt pairs (the model was trained on names): the issue's case."""
    n_tok = lambda s: len(bpe.tokenizer(s, add_special_tokens=False)["input_ids"])  # noqa: E731
    rng, rows = random.Random(0), []
    while len(rows) < 40:
        a, b = ("".join(rng.choice(EMOJI) for _ in range(4)) for _ in range(2))
        if n_tok(a) == n_tok(b):
            rows.append({"clean": a, "corrupted": b, "answer": " A", "wrong_answer": " B"})
    path = tmp_path_factory.mktemp("emoji") / "emoji.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def test_gap_noise_criterion():
    assert GapNoise(gap=0.0021, se=0.001, sd=0.0065, n=40).too_noisy()  # 2.1 SE from 0
    assert GapNoise(gap=0.5, se=0.01, sd=4.0, n=160_000).too_noisy()  # 50 SE, 1/8 of spread
    assert not GapNoise(gap=9.5, se=0.55, sd=4.4, n=64).too_noisy()  # tiny-ioi's ioi
    assert not GapNoise(gap=1.0, se=0.0, sd=0.0, n=64).too_noisy()  # tracr: exact, no spread
    assert not GapNoise(gap=0.15, se=0.036, sd=0.29, n=64).too_noisy()  # tracr-frac-prevs


def test_faithfulness_far_outside_0_1_is_warned():
    (w,) = faithfulness_warnings(None, 1.0, 0.0, normalized=1.318)
    assert "normalized faithfulness 1.318 is far outside [0, 1]" in w
    (w,) = faithfulness_warnings(None, 1.0, 0.0, normalized=-0.6)
    assert "beyond the empty circuit's" in w
    assert faithfulness_warnings(None, 1.0, 0.0, normalized=1 + FAR_OUTSIDE / 2) == []
    assert faithfulness_warnings(None, 1.0, 0.0, normalized=0.0) == []


def test_a_degenerate_gap_gets_one_warning_not_two():
    ws = faithfulness_warnings(None, 1.0, 1.0, normalized=float("nan"))
    assert len(ws) == 1 and "nearly the same metric" in ws[0]


def test_emoji_prompts_are_warned_once_by_discover_and_evaluate(bpe, emoji_pairs, tmp_path):
    """Before: faithfulness printed with no warning (the gap is ~4% of the metric, above the
    0.1% of the "nearly the same" check), on the CLI and in the Python API."""
    from acdc_engine import discover, evaluate_scores

    r = discover(bpe, str(emoji_pairs), "eap", n_edges=20, track=False, render=False,
                 progress=False, threads=1, out=tmp_path / "run")
    assert sum(NOISY in w for w in r.warnings) == 1, r.warnings
    assert r.summary().count("warning: the full model") == 1
    e = evaluate_scores(tmp_path / "run", track=False, render=False, progress=False,
                        threads=1, model=bpe)
    assert sum(NOISY in w for w in e.warnings) == 1, e.warnings


def test_emoji_prompts_are_warned_once_on_the_cli(emoji_pairs, tmp_path, capsys):
    from acdc_engine.cli import main

    assert main(["discover", "--model", "gpt2-ioi-bpe", "--task", str(emoji_pairs), "--method",
                 "eap", "--edges", "20", "--no-track", "--no-render", "--no-progress",
                 "--threads", "1", "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert text.count("warning: the full model") == 1 and NOISY in text
    assert "Traceback" not in text


def test_a_real_task_is_not_warned(bpe):
    from acdc_engine import discover

    torch.manual_seed(0)
    r = discover(bpe, "ioi-names", "eap", n_examples=32, n_edges=40, curve=False, threads=1,
                 track=False, render=False, progress=False)
    assert not any(NOISY in w for w in r.warnings), r.warnings
