"""Scoring on a task that reads several positions: EAP to first order, faithfulness of the
full circuit, and the fast ACDC engine against the reference, decision for decision."""

from __future__ import annotations

import warnings

import pytest
import torch
from position_rows import per_position_rows

from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.scoring.acdc import AcdcConfig, PruneWarning, acdc, acdc_naive
from acdc_engine.tasks import prepare
from acdc_engine.testing import first_order_error
from acdc_engine.testing.numerics import f32_bound, max_error


def _problem(model, metric="logit_diff", n=6, positions="all", batch_size=4):
    data = prepare("pp", model.tokenizer, per_position_rows(n, seed=4, positions=positions))
    return Problem.build(model, data, registry().metric(metric), "corrupted", batch_size)


def test_eap_on_read_positions_is_exact_to_first_order(model64):
    p = _problem(model64, n=2, batch_size=2)
    (batch,) = p.batches
    assert batch.k == 5
    err, scale = first_order_error(model64, batch.clean, batch.corrupted, eps=1e-4,
                                   metric=p.metric, batch=batch)
    assert scale > 1e-2
    # not a rounding bound (float64: ~1e-12): the neglected second-order term is O(eps) =
    # 1e-4 of the effect times the curvature; 1e-2 allows curvature up to 100
    assert err < 1e-2, f"relative first-order error {err:.2e}"


def test_full_circuit_is_fully_faithful_on_read_positions(model64):
    p = _problem(model64)
    ones = torch.ones(p.graph.n_writers, p.graph.n_readers)
    f = p.faithfulness(ones)
    assert f.full != pytest.approx(f.empty, abs=1e-3)  # a behaviour to recover (not a bound)
    # an all-ones mask touches no reader: the circuit's run is the full model's, bit for bit
    assert f.circuit == f.full and f.normalized == 1.0


@pytest.mark.parametrize("metric, positions, tau", [
    ("kl_div", "all", 0.01),
    ("logit_diff", [1, -2], 0.02),
])
def test_fast_acdc_equals_naive_on_read_positions(model64, metric, positions, tau):
    p = _problem(model64, metric, positions=positions)
    assert not any(b.last_only for b in p.batches)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruneWarning)
        ref = acdc_naive(p, AcdcConfig(tau, progress=False))
        got = acdc(p, AcdcConfig(tau, progress=False))
    assert got.decisions == ref.decisions
    assert torch.equal(got.keep, ref.keep)
    # the model is float64, but the KL leaves kl_to_clean rounded to float32 and the scores are
    # stored in float32: 16 eps32 x max(|score|, |metric|) (a few float32 roundings of the
    # largest value; the float64 arithmetic around them adds ~1e-16)
    bound = f32_bound(ref.scores, ref.metric_final, got.metric_final)
    assert max_error(got.scores, ref.scores) <= bound
    assert 0 < ref.n_kept < p.graph.n_edges
    assert abs(got.metric_final - ref.metric_final) <= bound
    (value,) = p.with_metric(p.metric).evaluate([p.graph.mask_from_edges(got.keep)])
    assert abs(value - got.metric_final) <= bound


def test_checkpoint_fingerprint_knows_the_read_positions(model64):
    import hashlib

    from acdc_engine.scoring.acdc.checkpoints import fingerprint
    from acdc_engine.testing import random_pairs

    a = fingerprint(_problem(model64, positions=[1, -2]), {})["data"]
    b = fingerprint(_problem(model64, positions=[0, -1]), {})["data"]
    assert a != b
    # a last-position task keeps the fingerprint it had (old checkpoints still resume)
    data = prepare("t", model64.tokenizer, random_pairs(6))
    p = Problem.build(model64, data, registry().metric("kl_div"), "corrupted", 4)
    h = hashlib.sha256()
    for batch in p.batches:
        for t in (batch.clean, batch.corrupted, batch.answer):
            h.update(t.numpy().tobytes())
    assert fingerprint(p, {})["data"] == h.hexdigest()[:16]
