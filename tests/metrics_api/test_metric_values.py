"""Metric values against hand computations from the model's plain logits.

Every expected number here is computed from ``run(adapter, ids)`` (all positions, no
patching) with torch's own functions, never through ``Metric.score``.
"""

from __future__ import annotations

import math

import pytest
import torch
from position_rows import per_position_rows

from acdc_engine.metrics import Metric
from acdc_engine.patching import LAST, NO_PATCH, ReadOut, run
from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.tasks import Task, prepare
from acdc_engine.testing import check_metric, random_pairs
from acdc_engine.testing.numerics import assert_close_to_f64, float64

# Bound at every site (acdc_engine.testing.numerics): the expected value is computed in float64
# twice, from the float32 logits ("plain": the float32 forward's error only) and from the
# model's float64 logits (ref64); the metric's float32 value must be within 4x the plain error
# + 16 eps x max(|value|, max|logit|) of ref64 (a metric of logits is a difference of terms as
# large as the logits; KL's terms are as large as log(vocab) + max|logit|).


def _full_logits(model, ids, f64: bool = False):
    """[b, p, vocab] float64: the float32 run's logits cast up, or (``f64``) the run in
    float64."""
    with torch.no_grad():
        if not f64:
            return run(model.adapter, ids).double()
        with float64(model):
            return run(model.adapter, ids)


def _held(got, plain, ref64, *magnitudes, what=""):
    assert_close_to_f64(got, plain, ref64, *magnitudes, factor=4, ulps=16, what=what)


def _last_position_values(model, batch, f64: bool) -> dict:
    lg = _full_logits(model, batch.clean, f64)[:, -1]  # [b, vocab]
    corr = _full_logits(model, batch.corrupted, f64)[:, -1]
    a, w = batch.answer, batch.wrong
    pick = lambda t, i: t.gather(1, i[:, None])[:, 0]  # noqa: E731
    logp_c, logp_k = corr.log_softmax(-1), lg.log_softmax(-1)
    return {
        "logit_diff": pick(corr, a) - pick(corr, w),
        "prob_diff": pick(corr.softmax(-1), a) - pick(corr.softmax(-1), w),
        "nll": -pick(logp_c, a),
        "accuracy": (corr.argmax(-1) == a).double(),
        "kl_div": (logp_k.exp() * (logp_k - logp_c)).sum(-1),  # KL(clean || corrupted run)
        "answer_logprob": pick(logp_c, a),
    }


def test_builtins_on_last_position_tasks_keep_their_values(gpt2):
    data = prepare("t", gpt2.tokenizer, random_pairs(8, seed=1))
    (batch,) = data.batches(8)
    assert batch.last_only and batch.positions.tolist() == [[5]] * 8
    want = _last_position_values(gpt2, batch, f64=False)
    want64 = _last_position_values(gpt2, batch, f64=True)
    lg = _full_logits(gpt2, batch.clean)[:, -1]
    scale = float(lg.abs().max()) + math.log(lg.shape[-1])  # max|logit| + log(vocab)
    for name, expected in want.items():
        p = Problem.build(gpt2, data, registry().metric(name), "corrupted", batch_size=8)
        b = p.batches[0]
        with torch.no_grad():
            got = p.metric.score(run(gpt2.adapter, b.corrupted, NO_PATCH, ReadOut.of(b)), b)
            old = p.metric(run(gpt2.adapter, b.corrupted, NO_PATCH, LAST)[:, -1], b)
        _held(got, expected, want64[name], scale, what=name)
        # the empty circuit with corrupted ablation is the corrupted run
        (empty,) = p.evaluate([p.empty_mask()])
        _held(empty, expected.mean(), want64[name].mean(), scale, what=f"{name}, empty")
        # the old call (last-position logits [b, vocab]) still gives the same numbers
        assert torch.equal(old, got), name


def test_each_metric_averages_the_read_positions(gpt2):
    data = prepare("t", gpt2.tokenizer, per_position_rows(6, seed=2))
    (batch,) = data.batches(8)
    assert batch.positions.tolist() == [[0, 1, 2, 3, 4]] * 6 and not batch.last_only
    assert batch.answers.shape == batch.wrongs.shape == (6, 5)
    def per_position(lg):  # [b, 5, vocab] -> [b, 5, 1]
        return lg.gather(2, batch.answers[..., None]) - lg.gather(2, batch.wrongs[..., None])

    lg = _full_logits(gpt2, batch.clean)  # [b, 5, vocab]
    per_pos = per_position(lg)
    want = per_pos[..., 0].mean(1)  # [b]: mean over the 5 read positions
    want64 = per_position(_full_logits(gpt2, batch.clean, f64=True))[..., 0].mean(1)
    scale = float(lg.abs().max())
    p = Problem.build(gpt2, data, registry().metric("logit_diff"), "corrupted")
    with torch.no_grad():
        logits = run(gpt2.adapter, batch.clean, NO_PATCH, ReadOut.at(batch.positions))
        got = p.metric.score(logits, batch)
    _held(got, want, want64, scale, what="per position")
    _held(p.evaluate([None])[0], want.mean(), want64.mean(), scale, what="per position, mean")
    # not the last position alone: that would be a different number
    assert float((per_pos[:, -1, 0] - want).abs().max()) > 1e-3


def test_all_metric_sees_every_read_position(gpt2):
    rows = per_position_rows(4, seed=3, positions=[1, -1])
    data = prepare("t", gpt2.tokenizer, rows)
    seen = []

    def fn(logits, batch):
        seen.append((tuple(logits.shape), batch.positions.tolist()))
        return logits[:, 1, 0] - logits[:, 0, 0]

    m = Metric("probe", fn, reads="all")
    p = Problem.build(gpt2, data, m, "corrupted")
    (value,) = p.evaluate([None])
    V = gpt2.adapter.unembed(torch.zeros(1, 1, gpt2.adapter.d_model)).shape[-1]
    assert seen == [((4, 2, V), [[1, 4]] * 4)]
    lg = _full_logits(gpt2, p.batches[0].clean)
    lg64 = _full_logits(gpt2, p.batches[0].clean, f64=True)
    _held(value, (lg[:, 4, 0] - lg[:, 1, 0]).mean(), (lg64[:, 4, 0] - lg64[:, 1, 0]).mean(),
          lg, what="reads all")


def test_answer_logprob_is_the_teacher_forced_sum(gpt2):
    rows = [{"clean": "w1 w2 w3", "corrupted": "w4 w5 w6", "answer": "w7 w8 w9"},
            {"clean": "w10 w11 w12", "corrupted": "w13 w14 w15", "answer": "w16 w17 w18"}]
    task = Task("mt", lambda n, s: rows, multi_token_answer=True)
    data = prepare(task, gpt2.tokenizer, rows)
    assert data.positions == [[2, 3, 4]] * 2  # prompt + first two answer tokens
    p = Problem.build(gpt2, data, registry().metric("answer_logprob"), "corrupted")
    (value,) = p.evaluate([None])
    tok = gpt2.tokenizer
    want, want64, scale = [], [], 0.0
    for r in rows:
        prompt = tok(r["clean"], add_special_tokens=False)["input_ids"]
        answer = tok(r["answer"], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + answer[:-1]])  # teacher forcing, done by hand
        for f64, out in ((False, want), (True, want64)):
            lg = _full_logits(gpt2, ids, f64)[0]
            logp = lg.log_softmax(-1)
            out.append(sum(float(logp[len(prompt) - 1 + i, t]) for i, t in enumerate(answer)))
        scale = max(scale, float(lg.abs().max()) + math.log(lg.shape[-1]))
    # a log-probability: terms as large as max|logit| + log(vocab), summed over the answer
    _held(value, sum(want) / 2, sum(want64) / 2, scale * len(answer), what="teacher forced")
    # the corrupted prompt gets the same answer prefix: pairs stay aligned
    assert p.batches[0].corrupted[0, 3:].tolist() == p.batches[0].clean[0, 3:].tolist()


def test_set_metrics_are_mass_and_logsumexp_differences(gpt2):
    rows = [{"clean": "w1 w2 w3", "corrupted": "w4 w5 w6",
             "answer_set": ["w7", "w8", "w9"], "wrong_set": ["w10"]},
            {"clean": "w11 w12 w13", "corrupted": "w14 w15 w16",
             "answer_set": ["w17"], "wrong_set": ["w18", "w19"]}]
    data = prepare("gt", gpt2.tokenizer, rows)
    (batch,) = data.batches()
    assert batch.answer_set.tolist()[1][1:] == [-1, -1]  # padded
    ids = lambda ws: gpt2.tokenizer.convert_tokens_to_ids(ws)  # noqa: E731

    def values(f64):
        lg = _full_logits(gpt2, batch.clean, f64)[:, -1]
        probs = lg.softmax(-1)
        want_p, want_l = [], []
        for i, r in enumerate(rows):
            a, w = ids(r["answer_set"]), ids(r["wrong_set"])
            want_p.append(float(probs[i, a].sum() - probs[i, w].sum()))
            want_l.append(float(lg[i, a].logsumexp(0) - lg[i, w].logsumexp(0)))
        return {"set_prob_diff": want_p, "set_logit_diff": want_l}, float(lg.abs().max())

    (want, scale), (want64, _) = values(False), values(True)
    for name in ("set_prob_diff", "set_logit_diff"):
        p = Problem.build(gpt2, data, registry().metric(name), "corrupted")
        b = p.batches[0]
        with torch.no_grad():
            got = p.metric.score(run(gpt2.adapter, b.clean, NO_PATCH, LAST), b)
        _held(got, torch.tensor(want[name], dtype=torch.float64),
              torch.tensor(want64[name], dtype=torch.float64), scale, what=name)


def test_set_metric_refuses_a_task_without_sets(gpt2):
    from acdc_engine.errors import AcdcError

    data = prepare("t", gpt2.tokenizer, random_pairs(4))
    with pytest.raises(AcdcError, match="set_prob_diff.*answer_set.*task 't'"):
        Problem.build(gpt2, data, registry().metric("set_prob_diff"), "corrupted")


def test_extra_keys_reach_the_batch(gpt2):
    rows = [dict(r, label=i % 2, note=f"n{i}", _line=i + 1)
            for i, r in enumerate(random_pairs(4))]
    (batch,) = prepare("t", gpt2.tokenizer, rows).batches()
    assert torch.equal(batch.extra["label"], torch.tensor([0, 1, 0, 1]))
    assert batch.extra["note"] == ["n0", "n1", "n2", "n3"] and "_line" not in batch.extra
    assert batch.select([1, 3]).extra["note"] == ["n1", "n3"]
    assert batch.repeat(2).extra["label"].tolist() == [0, 1, 0, 1] * 2


@pytest.mark.parametrize("name", ["logit_diff", "prob_diff", "kl_div", "nll", "accuracy",
                                  "answer_logprob", "set_prob_diff", "set_logit_diff", "l2"])
def test_builtin_metrics_pass_the_conformance_kit(name):
    check_metric(registry().metric(name))
