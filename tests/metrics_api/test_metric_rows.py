"""Row validation of the new keys, tokenizer-aware rows functions and their notes."""

from __future__ import annotations

import pytest

from acdc_engine.errors import TaskDataError
from acdc_engine.tasks import Task, TaskRows, prepare
from acdc_engine.testing import word_tokenizer

TOK = word_tokenizer()


def _problems(rows, task="t") -> str:
    with pytest.raises(TaskDataError) as e:
        prepare(task, TOK, rows)
    return str(e.value)


def test_every_bad_row_is_reported_with_its_row():
    rows = [
        {"clean": "w1 w2 w3", "corrupted": "w4 w5 w6", "answer": "w7", "positions": [3]},
        {"clean": "w1 w2 w3", "corrupted": "w4 w5 w6", "answer": ["w7", "w8"],
         "positions": "all"},
        {"clean": "w1 w2 w3", "corrupted": "w4 w5 w6", "answer_set": ["w7", "w8 w9"],
         "wrong_set": ["w1"]},
        {"clean": "w1 w2 w3", "corrupted": "w4 w5 w6", "answer": "w7 w8"},
        {"clean": "w1 w2 w3", "corrupted": "w4 w5 w6", "answer": "w7", "positions": [-4]},
        {"clean": "w1 w2 w3", "corrupted": "w4 w5 w6", "answer": "w7", "positions": "last"},
    ]
    msg = _problems(rows)
    assert "row 1: positions [3] out of range for a 3-token prompt" in msg
    assert "row 2: answer has 2 entries but the row reads 3 position(s)" in msg
    assert "row 3: answer_set 'w8 w9' is 2 tokens, not one" in msg
    assert "row 4: answer 'w7 w8' is 2 tokens, not one" in msg
    assert "multi_token_answer=True" in msg  # the hint names the flag
    assert "row 5: positions [-4] out of range" in msg
    assert "row 6: positions must be 'all' or a non-empty list" in msg
    assert "row 3: wrong_set" not in msg and "answer_set is missing" in msg  # rows 1, 2, 4..


def test_multi_token_wrong_answer_must_match_the_answer_length():
    rows = [{"clean": "w1 w2", "corrupted": "w3 w4", "answer": "w5 w6 w7",
             "wrong_answer": "w8 w9"}]
    with pytest.raises(TaskDataError, match="row 1: wrong_answer 'w8 w9' is 2 tokens but the "
                                            "answer 'w5 w6 w7' is 3"):
        prepare(Task("mt", lambda n, s: rows, multi_token_answer=True), TOK, rows)
    rows[0]["wrong_answer"] = "w8 w9 w10"
    data = prepare(Task("mt", lambda n, s: rows, multi_token_answer=True), TOK, rows)
    ids = TOK.convert_tokens_to_ids
    assert data.clean == [ids(["w1", "w2", "w5", "w6"])]
    assert data.corrupted == [ids(["w3", "w4", "w5", "w6"])]
    assert data.positions == [[1, 2, 3]]
    assert data.answers == [ids(["w5", "w6", "w7"])] and data.answer == [ids("w7")]
    assert data.wrongs == [ids(["w8", "w9", "w10"])]


def test_positions_and_per_position_answers_are_tokenized():
    rows = [{"clean": "w1 w2 w3 w4", "corrupted": "w5 w6 w7 w8", "positions": [0, -1],
             "answer": ["w9", "w10"], "wrong_answer": "w11"}]
    data = prepare("t", TOK, rows)
    ids = TOK.convert_tokens_to_ids
    assert data.positions == [[0, 3]]
    assert data.answers == [ids(["w9", "w10"])]
    assert data.wrongs == [ids(["w11", "w11"])]  # one wrong answer for every read position
    (b,) = data.batches()
    assert b.positions.tolist() == [[0, 3]] and not b.last_only
    view = b.at(0)
    assert view.answer.tolist() == [ids("w9")] and view.positions.tolist() == [[0]]


def test_batches_group_by_length_and_number_of_read_positions():
    rows = [{"clean": "w1 w2 w3", "corrupted": "w4 w5 w6", "answer": "w7"},
            {"clean": "w1 w2 w3", "corrupted": "w4 w5 w6", "answer": "w7", "positions": "all"},
            {"clean": "w1 w2 w3", "corrupted": "w4 w5 w6", "answer": "w8"}]
    batches = prepare("t", TOK, rows).batches()
    assert [(b.rows, b.k) for b in batches] == [([0, 2], 1), ([1], 3)]
    assert batches[0].last_only and not batches[1].last_only


def test_rows_function_gets_the_tokenizer_and_its_notes_reach_the_data(gpt2):
    from acdc_engine.api.setup import load_data

    seen = {}

    def rows(n, seed, tokenizer=None):
        seen["tokenizer"] = tokenizer
        kept = [w for w in ("w1", "w2", "xyz") if tokenizer(w)["input_ids"] != [0]]
        return TaskRows([{"clean": "w1 w2", "corrupted": "w3 w4", "answer": w}
                         for w in kept][:n], notes={"words": f"{len(kept)} of 3 known"})

    task = Task("tok", rows)
    data = load_data(task, gpt2, n_examples=5)
    assert seen["tokenizer"] is gpt2.tokenizer
    assert data.meta["notes"] == {"words": "2 of 3 known"} and len(data) == 2
    # a plain rows(n, seed) keeps working
    plain = Task("plain", lambda n, seed: [{"clean": "w1", "corrupted": "w2", "answer": "w3"}])
    assert len(load_data(plain, gpt2)) == 1 and "notes" not in load_data(plain, gpt2).meta


def test_discover_reports_the_task_notes(gpt2):
    from acdc_engine import discover
    from acdc_engine.testing import random_pairs

    task = Task("noted", lambda n, seed, tokenizer=None: TaskRows(
        random_pairs(n, seed=seed), notes={"examples": f"{n} of {n}"}))
    r = discover(gpt2, task, "eap", n_edges=5, n_examples=6, track=False, progress=False,
                 render=False)
    assert r.params["task.examples"] == "6 of 6"
    assert "task notes: examples: 6 of 6" in r.summary().splitlines()
