"""``acdc pairs make`` and :mod:`acdc_engine.pairs`: counterfactual pairs from plain prompts,
checked on the model, end to end into ``acdc discover``; and the bad inputs it refuses."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from acdc_engine.cli import main
from acdc_engine.pairs import ENTITIES, PairsError, make_pairs, make_pairs_file, read_prompts
from acdc_engine.pairs.strategies import STRATEGIES, Context, Reject, Tokens

PROMPTS = Path(__file__).parents[1] / "data" / "ioi_plain_prompts.txt"
MODEL = "gpt2-ioi-bpe"


@pytest.fixture(scope="module")
def model():
    from acdc_engine import load_model

    return load_model(MODEL)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_hand_written_prompts_to_a_circuit(tmp_path, capsys):
    """The 50 hand-written IOI sentences -> entity-swap pairs on gpt2-ioi-bpe -> an EAP circuit
    with its faithfulness; the survival report says how many were kept and why the rest not."""
    assert len(read_prompts(PROMPTS)) == 50
    out = tmp_path / "pairs.jsonl"
    assert main(["pairs", "make", str(PROMPTS), "--strategy", "entity-swap", "--model", MODEL,
                 "--out", str(out), "--threads", "1"]) == 0
    report = capsys.readouterr().out
    kept, rejected = _jsonl(out), _jsonl(tmp_path / "pairs.rejected.jsonl")
    assert len(kept) + len(rejected) == 50 and len(kept) >= 40
    assert f"kept {len(kept)} of 50 prompt(s)" in report
    for reason in {r["reason"] for r in rejected}:
        n = sum(r["reason"] == reason for r in rejected)
        assert f"{n:4d}  {reason}" in report
    not_io = []
    for row in kept:  # the answer's name is swapped for another everywhere
        names = [w for w in re.findall(r"\w+", row["clean"]) if w in ENTITIES["names"]]
        if names.count(row["answer"].strip()) != 1:  # the model's answer is not the IO
            not_io.append(row["line"])
        assert row["answer"].strip() not in row["corrupted"]
        assert row["wrong_answer"].strip() in row["corrupted"]
        assert row["p_clean"] - row["p_corrupted"] >= 0.1
    # the answers are the model's own predictions: on one sentence of an unseen template
    # (line 51, "Mary and Bob went to ..., and Bob gave a snack to") it predicts the subject
    assert len(not_io) <= 2, not_io
    assert main(["discover", "--model", MODEL, "--task", str(out), "--method", "eap",
                 "--no-track", "--out", str(tmp_path / "run"), "--threads", "1"]) == 0
    faith = re.search(r"faithfulness: (\S+) normalized", capsys.readouterr().out)
    assert faith and float(faith.group(1)) > 0.5
    assert (tmp_path / "run" / "circuit.json").exists()


def test_role_swap_and_the_api(model):
    res = make_pairs(["When Mary and John went to the store, John gave a drink to",
                      ("Then, Sarah and Tom went to the park. Tom gave a ball to", " Sarah")],
                     model=model, strategy="role-swap")
    assert [r["corrupted"] for r in res.kept] == [
        "When Mary and John went to the store, Mary gave a drink to",
        "Then, Sarah and Tom went to the park. Sarah gave a ball to"]
    assert [(r["answer"], r["wrong_answer"]) for r in res.kept] == [
        (" Mary", " John"), (" Sarah", " Tom")]
    assert res.rejected == [] and "kept 2 of 2" in res.report()


def test_answers_given_after_a_tab_or_in_a_file(tmp_path, model):
    p = tmp_path / "p.txt"
    p.write_text("When Mary and John went to the store, John gave a drink to\tMary\n"
                 "When Anna and Paul went to the park, Paul gave a ball to\tJohn\n")
    res, out, side = make_pairs_file(p, tmp_path / "o.jsonl", model=model)
    assert [r["answer"] for r in res.kept] == [" Mary"]
    # " John" is not in the second prompt: the swap changes Anna, which barely moves p(John)
    assert [r["reason"] for r in _jsonl(side)] == ["margin"]
    q = tmp_path / "q.txt"
    q.write_text("When Mary and John went to the store, John gave a drink to\n")
    a = tmp_path / "a.txt"
    a.write_text("Mary\n")
    assert read_prompts(q, a)[0].answer == " Mary"
    a.write_text('" Mary"\n\n')
    assert read_prompts(q, a)[0].answer == " Mary"
    a.write_text("Mary\nJohn\n")
    with pytest.raises(PairsError, match="2 answer"):
        read_prompts(q, a)


def test_number_change_token_swap_and_control(model):
    tokens = Tokens(model.tokenizer)
    ctx = Context(tokens, random.Random(0))
    prompt = "The war lasted from the year 1732 to the year 17"
    for c in STRATEGIES["number-change"](prompt, "32", ctx):
        assert c.startswith("The war lasted from the year 1732 to the year ") and c != prompt
    clean = "When Mary and John went to the store, John gave a drink to"
    ids = tokens.ids(clean)
    for c in STRATEGIES["token-swap"](clean, " Mary", ctx):  # the answer's token, by default
        new = tokens.ids(c)
        assert len(new) == len(ids) and new[1] != ids[1] and new[2:] == ids[2:]
    for c in STRATEGIES["random-token"](clean, " Mary", ctx):
        new = tokens.ids(c)
        assert len(new) == len(ids) and new[-1] == ids[-1]
        assert sum(a != b for a, b in zip(new, ids)) == 1
    with pytest.raises(Reject, match="no number"):
        STRATEGIES["number-change"](clean, " Mary", ctx)


def test_refused_empty_file(tmp_path, capsys):
    p = tmp_path / "empty.txt"
    p.write_text("# only a comment\n\n")
    assert main(["pairs", "make", str(p), "--model", MODEL]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "has no prompts" in err


def test_refused_prompt_the_strategy_cannot_split(tmp_path, capsys):
    """Role swap needs two one-token names, one repeated: the row is named with the reason,
    in the error when it was the only prompt, in the report and side file otherwise."""
    p = tmp_path / "p.txt"
    p.write_text("When Bartholomew and Maximiliane went out, Bartholomew gave a drink to\n")
    assert main(["pairs", "make", str(p), "--strategy", "role-swap", "--model", MODEL]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "line 1: role swap needs two one-token names" in err
    p.write_text("When Mary and John went to the store, John gave a drink to\n"
                 "When Mary and Bartholomew went out, Mary gave a drink to\n")
    out = tmp_path / "o.jsonl"
    assert main(["pairs", "make", str(p), "--strategy", "role-swap", "--model", MODEL,
                 "--out", str(out)]) == 0
    assert "1  no-roles      e.g. line 2: role swap needs two" in capsys.readouterr().out
    (rej,) = _jsonl(tmp_path / "o.rejected.jsonl")
    assert rej["line"] == 2 and rej["reason"] == "no-roles"


def test_refused_strategy_that_keeps_no_pair(tmp_path, capsys):
    p = tmp_path / "p.txt"
    p.write_text("When Mary and John went to the store, John gave a drink to\n"
                 "When Sarah and Tom went to the park, Tom gave a ball to\n")
    assert main(["pairs", "make", str(p), "--strategy", "number-change", "--model", MODEL]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "kept no pair of the 2 prompt(s)" in err and "2 no-number (line 1:" in err
    assert not (tmp_path / "p.pairs.jsonl").exists()
    assert (tmp_path / "p.pairs.rejected.jsonl").exists()


def test_refused_options(tmp_path, capsys):
    p = tmp_path / "p.txt"
    p.write_text("When Mary and John went to the store, John gave a drink to\n")
    for argv, words in [(["--margin", "1.5"], "probability change"),
                        (["--strategy", "nope"], "invalid choice")]:
        with pytest.raises(SystemExit) as e:
            main(["pairs", "make", str(p), *argv])
        assert e.value.code == 2 and words in capsys.readouterr().err
    assert main(["pairs", "make", str(tmp_path / "missing.txt")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["pairs", "make", str(p), "--out", str(tmp_path / "o.csv")]) == 2
    assert "*.jsonl" in capsys.readouterr().err


def test_cli_strategy_names_are_the_packages():
    from acdc_engine.cli.pairs import STRATEGY_NAMES
    from acdc_engine.pairs import DEFAULT_MARGIN

    assert STRATEGY_NAMES == tuple(STRATEGIES)
    assert DEFAULT_MARGIN == 0.1


def test_docs_example_runs(capsys):
    """docs/pairs.md's Python example of make_pairs runs as written."""
    doc = (Path(__file__).parents[2] / "docs" / "pairs.md").read_text()
    section = doc.split("## From plain prompts")[1].split("\n## ")[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    exec(compile(code, "docs/pairs.md", "exec"), {})
    out = capsys.readouterr().out
    assert "kept 3 of 3 prompt(s)" in out
    assert "When Mary and John went to the store, Mary gave a drink to -> " \
           " Mary not  John" in out


def test_word_level_vocabulary_rejects_unknown_words(tmp_path, capsys):
    """tiny-ioi's word-level vocabulary: a prompt with a word it does not know is a rejected
    row (not an <unk> in the pairs file), the others are kept."""
    p = tmp_path / "p.txt"
    p.write_text("When Mary and John went to the store , John gave a drink to\n"
                 "When Zorblax and John went out , John gave a drink to\n")
    out = tmp_path / "o.jsonl"
    assert main(["pairs", "make", str(p), "--model", "tiny-ioi", "--strategy", "random-token",
                 "--margin", "0", "--out", str(out)]) == 0
    assert "1  unknown-word  e.g. line 2:" in capsys.readouterr().out
    (row,) = _jsonl(out)
    assert "<unk>" not in row["corrupted"]
