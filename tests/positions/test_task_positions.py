"""The literature tasks' named positions point at the tokens they name (for a real BPE
tokenizer: the shipped gpt2-ioi-bpe's)."""

from __future__ import annotations

import pytest

from acdc_engine.api import load_task
from acdc_engine.positions import PositionSplit
from acdc_engine.tasks import prepare


@pytest.fixture(scope="module")
def tokenizer():
    from acdc_engine.api import load_model

    return load_model("gpt2-ioi-bpe").tokenizer


def _split(task, tokenizer, n=12):
    t = load_task(task)
    rows = t.load_rows(n, 0, tokenizer=tokenizer)
    data = prepare(t, tokenizer, rows)
    return rows, data, PositionSplit.parse("named", data)


def test_ioi_names_positions(tokenizer):
    rows, data, split = _split("ioi-names", tokenizer)
    assert set(split.names) == {"IO", "S1", "S2", "END", "other"}
    batch = data.batches(64)[0]
    lab = split.labels(batch)
    for i, row in enumerate(batch.rows):
        toks = batch.clean[i].tolist()
        at = {split.names[g]: p for p, g in enumerate(lab[i].tolist()) if split.names[g] != "other"}
        assert tokenizer.decode([toks[at["IO"]]]) == data.rows[row]["answer"]
        assert toks[at["S1"]] == toks[at["S2"]] == tokenizer.encode(
            data.rows[row]["wrong_answer"])[0]
        assert at["S1"] < at["S2"] < at["END"] == len(toks) - 1


def test_greater_than_positions(tokenizer):
    rows, data, split = _split("greater-than", tokenizer)
    assert split.names == ("NOUN", "YY", "END", "other")
    batch = data.batches(64)[0]
    lab = split.labels(batch)
    for i, row in enumerate(batch.rows):
        toks = batch.clean[i].tolist()
        yy = lab[i].tolist().index(1)
        assert tokenizer.decode([toks[yy]]) == f"{data.rows[row]['year']:02d}"
        assert tokenizer.decode([toks[lab[i].tolist().index(0)]]).strip() == data.rows[row]["noun"]


def test_builtin_ioi_positions_on_tiny_ioi():
    """The default task on the shipped word-level model names the same positions."""
    from acdc_engine.api import load_model

    tok = load_model("tiny-ioi").tokenizer
    rows, data, split = _split("ioi", tok, n=16)
    assert set(split.names) == {"IO", "S1", "S2", "END", "other"}
    for batch in data.batches(64):
        lab = split.labels(batch)
        for i, row in enumerate(batch.rows):
            words = tok.convert_ids_to_tokens(batch.clean[i].tolist())
            at = {split.names[g]: p for p, g in enumerate(lab[i].tolist())}
            assert " " + words[at["IO"]] == data.rows[row]["answer"]
            assert " " + words[at["S1"]] == " " + words[at["S2"]] == data.rows[row]["wrong_answer"]
            assert at["S1"] < at["S2"] < at["END"] == len(words) - 1
