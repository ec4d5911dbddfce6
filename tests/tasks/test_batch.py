"""Batch (acdc_engine/tasks/batch.py): built by keyword, one home for the answers ([B, k]);
``answer``/``wrong`` are read-only views of the last read position (of position j in ``at(j)``)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from acdc_engine.tasks import Batch


def _batch(k=3, b=4):
    g = torch.Generator().manual_seed(0)
    answers, wrongs = (torch.randint(0, 50, (b, k), generator=g) for _ in "aw")
    return Batch(clean=torch.zeros(b, 6, dtype=torch.long), corrupted=torch.ones(b, 6,
                 dtype=torch.long), answers=answers, wrongs=wrongs, rows=list(range(b)),
                 positions=torch.arange(6 - k, 6).repeat(b, 1),
                 clean_logits=torch.randn(b, k, 50, generator=g), extra={"n": torch.arange(b)})


def test_answer_and_wrong_are_properties_of_the_last_read_position():
    b = _batch()
    assert {"answer", "wrong"}.isdisjoint(f.name for f in dataclasses.fields(Batch))
    assert torch.equal(b.answer, b.answers[:, -1]) and torch.equal(b.wrong, b.wrongs[:, -1])
    with pytest.raises(AttributeError):
        b.answer = b.answers[:, 0]
    assert dataclasses.replace(b, wrongs=None).wrong is None


def test_the_view_at_j_reads_position_j():
    b = _batch()
    for j in range(b.k):
        v = b.at(j)
        assert torch.equal(v.answer, b.answers[:, j]) and torch.equal(v.wrong, b.wrongs[:, j])
        assert torch.equal(v.positions, b.positions[:, j : j + 1])
        assert torch.equal(v.clean_logits, b.clean_logits[:, j]) and v.k == 1
        assert v.rows is b.rows and v.extra is b.extra


def test_keywords_only_and_answers_per_read_position():
    b = _batch()
    with pytest.raises(TypeError):
        Batch(b.clean, b.corrupted, b.answers, b.wrongs, b.rows)
    with pytest.raises(ValueError, match="answers must be"):
        Batch(clean=b.clean, corrupted=b.corrupted, answers=b.answers[:, -1], rows=b.rows)
    last = Batch(clean=b.clean, corrupted=b.corrupted, answers=b.answers[:, -1:], rows=b.rows)
    assert last.last_only and last.wrong is None
    from acdc_engine.patching import LAST, ReadOut

    assert ReadOut.of(last) is LAST  # read by a slice, not a gather
    assert ReadOut.of(b).positions is b.positions


def test_select_repeat_to_keep_every_field():
    b = _batch()
    s = b.select([2, 0])
    assert torch.equal(s.answers, b.answers[[2, 0]]) and s.rows == [2, 0]
    assert torch.equal(s.extra["n"], torch.tensor([2, 0])) and s.last_only == b.last_only
    r = b.repeat(2)
    assert len(r) == 8 and torch.equal(r.answer, b.answer.repeat(2)) and r.rows == b.rows * 2
    t = b.to("cpu")
    assert torch.equal(t.wrongs, b.wrongs) and torch.equal(t.clean_logits, b.clean_logits)
