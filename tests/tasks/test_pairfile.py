"""Pair files: a task from a JSONL or CSV file, checked before any model work, with every
problem reported at its line in the file."""

from __future__ import annotations

import json

import pytest
from acdc_engine.testing import random_pairs, word_tokenizer

from acdc_engine.api import load_task
from acdc_engine.errors import TaskDataError
from acdc_engine.plugins import plugin_manager
from acdc_engine.tasks import prepare
from acdc_tasks.pairfile import EXAMPLE, pair_file_task, read_pairs, write_ioi_example

ROWS = random_pairs(8, length=5, seed=3)


def jsonl(tmp_path, lines, name="pairs.jsonl"):
    path = tmp_path / name
    path.write_text("".join((ln if isinstance(ln, str) else json.dumps(ln)) + "\n"
                            for ln in lines))
    return path


def csv_file(tmp_path, text, name="pairs.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def problems(path) -> str:
    with pytest.raises(TaskDataError) as err:
        task = pair_file_task(path)
        prepare(task, word_tokenizer(), task.rows(None, 0))
    return str(err.value)


# ----- good files ---------------------------------------------------------------------------
def test_jsonl_task_prepares_with_a_tokenizer(tmp_path):
    rows = [{**r, "note": f"extra {i}"} for i, r in enumerate(ROWS)]
    path = jsonl(tmp_path, rows[:4] + [""] + rows[4:])  # a blank line is skipped
    task = pair_file_task(path)
    assert (task.name, task.model, task.default_metric, task.default_n) == ("pairs", None,
                                                                            "logit_diff", 8)
    got = task.rows(None, 0)
    assert got == read_pairs(path)
    assert [r["_line"] for r in got] == [1, 2, 3, 4, 6, 7, 8, 9]
    assert got[0]["note"] == "extra 0"  # extra columns are kept
    assert len(task.rows(3, 0)) == 3
    data = prepare(task, word_tokenizer(), got)
    assert len(data) == 8 and data.wrong is not None


def test_csv_task_without_wrong_answers_defaults_to_nll(tmp_path):
    body = "".join(f'{r["clean"]},{r["corrupted"]},"{r["answer"]}",x{i}\n'
                   for i, r in enumerate(ROWS))
    path = csv_file(tmp_path, "clean,corrupted,answer,source\n" + body)
    task = pair_file_task(path)
    assert task.default_metric == "nll"
    rows = task.rows(None, 0)
    assert rows[0]["_line"] == 2 and rows[0]["source"] == "x0" and rows[0]["answer"] == ROWS[0][
        "answer"]
    data = prepare(task, word_tokenizer(), rows)
    assert len(data) == 8 and data.wrong is None


def test_the_hook_reads_jsonl_and_csv_only(tmp_path):
    path = jsonl(tmp_path, ROWS)
    hook = plugin_manager().hook.acdc_task_from_path
    assert hook(path=str(path)).name == "pairs"
    assert hook(path=str(tmp_path / "pairs.txt")) is None
    assert load_task(str(path)).default_n == len(ROWS)
    with pytest.raises(TaskDataError, match="does not exist"):
        load_task(str(tmp_path / "missing.jsonl"))


def test_shipped_example_is_reproducible_and_valid(tmp_path):
    copy = write_ioi_example(tmp_path / "ioi_pairs.jsonl")
    assert copy.read_text() == EXAMPLE.read_text()
    task = pair_file_task(EXAMPLE)
    rows = task.rows(None, 0)
    assert len(rows) == 40 and task.default_metric == "logit_diff"
    assert all(r["answer"].startswith(" ") and len(r["clean"].split()) ==
               len(r["corrupted"].split()) for r in rows)


# ----- bad files: every problem at its line -------------------------------------------------
def test_missing_and_empty_files(tmp_path):
    assert "does not exist" in problems(tmp_path / "nope.jsonl")
    assert "empty" in problems(jsonl(tmp_path, []))
    assert "empty" in problems(csv_file(tmp_path, "\n\n"))
    assert "header but no rows" in problems(csv_file(tmp_path, "clean,corrupted,answer\n",
                                                     "head.csv"))


def test_jsonl_line_problems(tmp_path):
    good = ROWS[0]
    lines = [
        good,                                               # 1
        '{"clean": "w1 w2", "corrupted": ',                 # 2 malformed JSON
        ["not", "an", "object"],                            # 3
        {"clean": "w1 w2", "answer": " w3"},                # 4 missing corrupted
        {**ROWS[1], "answer": "  "},                        # 5 empty value
        "",                                                 # 6 blank: fine
        {**good, "wrong_answer": " w9"},                    # 7 duplicate of line 1
        {**ROWS[2], "clean": 5},                            # 8 not text
    ]
    msg = problems(jsonl(tmp_path, lines))
    assert "6 problem(s)" in msg
    for expected in ("line 2: not valid JSON", "line 3: expected a JSON object",
                     "line 4: missing key(s) corrupted", "line 5: empty answer",
                     "line 7: duplicate of line 1", "line 8: clean must be text"):
        assert expected in msg, msg


def test_wrong_answers_all_or_nothing(tmp_path):
    rows = [ROWS[0], {k: v for k, v in ROWS[1].items() if k != "wrong_answer"}, ROWS[2]]
    msg = problems(jsonl(tmp_path, rows))
    assert "line 2: empty wrong_answer" in msg and "1 problem(s)" in msg


def test_csv_line_problems(tmp_path):
    assert "line 1: the header has no column(s) answer" in problems(
        csv_file(tmp_path, "clean,corrupted,wrong_answer\nw1,w2, w3\n"))
    text = ("clean,corrupted,answer,wrong_answer\n"  # 1
            "w1 w2,w3 w4, w5, w6\n"                  # 2
            "\n"                                     # 3 blank: fine
            "w1 w2,w3 w4, w5, w7\n"                  # 4 duplicate of line 2
            '"w1\nw2",w3 w4,,w6\n'                   # 5-6: a quoted newline; empty answer
            "w1,w2, w5\n"                            # 7 too few fields
            "w8,w9, w5, w6\n")                       # 8 fine
    msg = problems(csv_file(tmp_path, text, "bad.csv"))
    assert "3 problem(s)" in msg
    for expected in ("line 4: duplicate of line 2", "line 5: empty answer",
                     "line 7: 3 fields, but the header has 4"):
        assert expected in msg, msg


def test_tokenizer_problems_name_file_lines(tmp_path):
    rows = [ROWS[0],                                                     # 1
            {**ROWS[1], "corrupted": ROWS[1]["corrupted"] + " w1"},      # 2 length mismatch
            ROWS[2],                                                     # 3
            {**ROWS[3], "answer": " w1 w2"}]                             # 4 two-token answer
    msg = problems(jsonl(tmp_path, rows[:2] + [""] + rows[2:]))  # blank line shifts 3, 4 to 4, 5
    assert "2 problem(s)" in msg
    assert "line 2: clean prompt is 5 tokens but corrupted is 6" in msg
    assert "line 5: answer ' w1 w2' is 2 tokens" in msg
    csv_path = csv_file(tmp_path, "clean,corrupted,answer\nw1 w2,w3, w4\nw1,w2, w3 w4\n")
    msg = problems(csv_path)
    assert "2 problem(s)" in msg
    assert "line 2: clean prompt is 2 tokens" in msg and "line 3: answer ' w3 w4'" in msg


# ----- end to end ---------------------------------------------------------------------------
def test_discover_on_a_pair_file(tmp_path, gpt2_path):
    from acdc_engine import discover

    path = jsonl(tmp_path, random_pairs(8, length=6, seed=5), name="mine.jsonl")
    result = discover(model=str(gpt2_path), task=str(path), method="eap", n_edges=5,
                      track=False, curve=False, progress=False)
    assert result.params["task"] == "mine"
    assert result.params["task_ref"] == str(path.resolve())
    assert 0 < result.circuit.number_of_edges() <= 5


def test_bad_file_fails_before_the_model_is_loaded(tmp_path):
    from acdc_engine import discover

    path = jsonl(tmp_path, [ROWS[0], "{oops"])
    with pytest.raises(TaskDataError, match="line 2: not valid JSON"):
        discover(model=str(tmp_path / "no-such-model"), task=str(path), method="eap",
                 n_edges=5, track=False)
