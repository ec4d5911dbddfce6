"""ACDC speed rewrites are exact: every prepared (stacked) metric equals the plain one on the
repeated batch (the KL's accuracy against float64: test_metric_accuracy.py),
and unembedding only the metric's columns equals the full unembedding, down to ACDC's decisions.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from acdc_engine import load_model
from acdc_engine.metrics import Metric
from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.scoring.acdc import AcdcConfig, PruneWarning, acdc, acdc_naive
from acdc_engine.scoring.acdc.engine import Engine
from acdc_engine.tasks import Batch, prepare
from acdc_engine.testing import random_pairs, save_gpt2


def _batch(b=5, k=1, vocab=300, seed=0, offset=0.0):
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (b, 6), generator=gen)
    ans = torch.randint(0, vocab, (b, k), generator=gen)
    wrong = torch.randint(0, vocab, (b, k), generator=gen)
    sets = torch.randint(0, vocab, (b, 4), generator=gen)
    sets[0, -1] = -1  # padding
    clean = torch.randn(b, k, vocab, generator=gen) * 3 + offset
    pos = torch.arange(6 - k, 6).expand(b, k)
    return Batch(clean=ids, corrupted=ids, answers=ans, wrongs=wrong, rows=list(range(b)),
                 clean_logits=clean, positions=pos, answer_set=sets[:, :2],
                 wrong_set=sets[:, 2:]), gen


@pytest.mark.parametrize("name", ["kl_div", "logit_diff", "set_logit_diff", "nll", "prob_diff"])
@pytest.mark.parametrize("k", [1, 3])
def test_stacked_equals_score_on_the_repeated_batch(name, k):
    """``metric.stacked(batch)(logits [c, B, k, V or M])`` equals ``metric.score`` on the batch
    repeated c times; a metric with columns is given the logits at its columns alone."""
    metric = registry().metric(name)
    batch, gen = _batch(b=5, k=k)
    c = 4
    logits = torch.randn(c, 5, k, 300, generator=gen) * 2  # [c, B, k, V]
    want = metric.score(logits.reshape(c * 5, k, 300), batch.repeat(c)).view(c, 5)
    scorer = metric.stacked(batch)
    if scorer.columns is not None:
        assert len(scorer.columns) < 300
        logits = logits.index_select(-1, scorer.columns)
    got = scorer(logits)
    assert got.shape == (c, 5)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-6), got - want


def test_builtin_prepared_forms_are_declared():
    reg = registry()
    assert reg.metric("kl_div").prepare is not None and reg.metric("kl_div").columns is None
    for name in ("logit_diff", "set_logit_diff"):
        assert reg.metric(name).columns is not None
    batch, _ = _batch(b=5)
    cols = reg.metric("logit_diff").stacked(batch).columns
    assert cols.tolist() == batch.answer.tolist() + batch.wrong.tolist()


def test_a_prepared_form_must_return_one_value_per_candidate_and_example():
    from acdc_engine.errors import MetricError

    bad = Metric("bad", lambda lg, b: lg[:, 0], prepare=lambda b: (lambda z: z[..., 0, 0]))
    batch, _ = _batch(b=5)
    with pytest.raises(MetricError, match=r"\[candidates, batch\] = \[2, 5\]"):
        bad.stacked(batch)(torch.zeros(2, 5, 1, 300))
    nan = Metric("nan", lambda lg, b: lg[:, 0],
                 prepare=lambda b: (lambda z: z[..., 0] / 0 * 0))
    with pytest.raises(MetricError, match="row 1"):
        nan.stacked(batch)(torch.zeros(2, 5, 1, 300))
    with pytest.raises(MetricError, match="columns needs a prepared form"):
        Metric("cols", lambda lg, b: lg[:, 0], columns=lambda b: b.answer)


@pytest.fixture(scope="module")
def model64(tmp_path_factory):
    path = save_gpt2(tmp_path_factory.mktemp("gpt2-acdc-speed"), n_layer=2, n_head=3,
                     n_embd=24, seed=5)
    return load_model(str(path), device="cpu", dtype=torch.float64)


def _problem(model, metric_name):
    data = prepare("rand", model.tokenizer, random_pairs(10, seed=3))
    return Problem.build(model, data, registry().metric(metric_name), "corrupted", 4)


def _columns_hook(adapter):
    """A GPT-2 ``unembed_columns``: the final norm, then the columns' rows of the unembedding."""
    calls = []

    def unembed_columns(x, columns):  # x [n, k, d], columns [M] -> [n, k, M]
        calls.append(len(columns))
        w = adapter.model.lm_head.weight.index_select(0, columns)  # [M, d]
        return adapter.tf.ln_f(x) @ w.T

    return unembed_columns, calls


def test_column_unembedding_equals_the_full_unembedding(model64):
    problem = _problem(model64, "logit_diff")
    g = problem.graph
    import numpy as np

    eng = Engine(problem, np.ones((g.n_writers, g.n_readers), dtype=bool))
    x = torch.randn(6, 1, model64.adapter.d_model, dtype=torch.float64)  # [n, k, d]
    cols = eng.states[0].scorer.columns
    full = model64.adapter.unembed(x)  # [n, k, vocab]
    # the built-in GPT-2 adapter's own column path
    assert eng.unembed_columns is not None
    assert torch.allclose(eng._unembed(x, cols), full[..., cols], atol=1e-12)
    eng.unembed_columns = None  # no hook: the full unembedding, then the columns
    assert torch.equal(eng._unembed(x, cols), full[..., cols])
    hook, calls = _columns_hook(model64.adapter)
    eng.unembed_columns = hook
    assert torch.allclose(eng._unembed(x, cols), full[..., cols], atol=1e-12)
    assert calls == [len(cols)]
    assert torch.equal(eng._unembed(x, None), full)


@pytest.mark.parametrize("metric_name", ["logit_diff", "kl_div"])
def test_fast_acdc_with_prepared_metrics_equals_naive(model64, metric_name, monkeypatch):
    """Decisions and kept edges are the naive reference's, with the column hook in use."""
    problem = _problem(model64, metric_name)
    hook, calls = _columns_hook(model64.adapter)
    monkeypatch.setattr(model64.adapter, "unembed_columns", hook, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruneWarning)
        for tau in (0.001, 0.01):
            ref = acdc_naive(problem, AcdcConfig(tau, progress=False))
            got = acdc(problem, AcdcConfig(tau, progress=False))
            assert got.decisions == ref.decisions and torch.equal(got.keep, ref.keep), tau
            assert got.metric_final == pytest.approx(ref.metric_final, abs=1e-6)
    assert bool(calls) == (metric_name == "logit_diff")
