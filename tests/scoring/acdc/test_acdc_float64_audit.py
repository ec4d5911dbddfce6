"""A float64 audit of the ACDC engine's float32 shortcuts (issue 22): the low-rank unembedding of
head changes, the query-rows attention, the reused logits buffer read in row groups, and the
whole engine against the reference (``acdc_naive``). Each runs in float32 and is compared with
the plain path in float32 and in float64 on the same inputs: its error against float64 within
4x the plain float32 path's own error + 16 eps x the largest term (``assert_close_to_f64``).

The metric values are KL divergences (the low-rank unembedding serves full-vocabulary metrics
only), a difference of terms as large as log(vocab): the magnitude in the bound is log(vocab)
plus the largest logit, not the (small) KL itself."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from acdc_speed_problems import engine_at_head, make_problem

from acdc_engine.api import load_model
from acdc_engine.patching import run
from acdc_engine.scoring.acdc import AcdcConfig, PruneWarning, acdc, acdc_naive
from acdc_engine.scoring.acdc import kernel as kernel_mod
from acdc_engine.testing import save_gpt2
from acdc_engine.testing.numerics import assert_close_to_f64, f32_bound, float64

FACTOR, ULPS = 4, 16

SHORTCUTS = ("low_rank", "query_rows", "logits_buffer")


@pytest.fixture(scope="module")
def narrow32(tmp_path_factory):
    """3 layers x 4 heads of d_head 8 in d_model 32 (heads small enough for the low rank)."""
    path = save_gpt2(tmp_path_factory.mktemp("gpt2-audit"), n_layer=3, n_head=4, n_embd=32,
                     seed=6)
    return load_model(str(path), device="cpu")


def _engine(model, layer, head, keep_shortcuts):
    """An engine about to test head ``a{layer}.{head}`` (its only kept write is the logits)
    with only ``keep_shortcuts`` on, and the head's edges."""
    def no_buffer(eng):  # the adapter's unembed, then the metric on all rows at once
        if "logits_buffer" not in keep_shortcuts and "low_rank" not in keep_shortcuts:
            eng.unembed.into = None

    eng, edges = engine_at_head(make_problem(model, n=6, batch_size=3), layer, head, no_buffer)
    if "low_rank" not in keep_shortcuts:
        for st in eng.states:
            st.low = None
    else:
        assert all(st.low is not None for st in eng.states)
    if "query_rows" not in keep_shortcuts:
        eng.multi_query_ok = False
    else:
        assert eng.multi_query_ok
    return eng, edges


def _values(model, keep_shortcuts, layer=2, head=1):
    eng, edges = _engine(model, layer, head, keep_shortcuts)
    sets = [edges[: j + 1] for j in range(len(edges))]  # q edges first, then k and v
    vals = eng.evaluate(sets)
    if "low_rank" in keep_shortcuts:
        assert eng.low_rank_evals == len(sets)
    return vals


def _scale(model):
    """log(vocab) + max |logit| of the clean run: the terms the KL is a difference of."""
    problem = make_problem(model, n=6, batch_size=3)
    with torch.no_grad():
        top = max(float(run(model.adapter, b.clean).abs().max()) for b in problem.batches)
    return math.log(model.hf.config.vocab_size) + top


@pytest.mark.parametrize("keep", [("low_rank",), ("query_rows",), ("logits_buffer",), SHORTCUTS])
def test_engine_shortcuts_against_float64(narrow32, keep, monkeypatch):
    monkeypatch.setattr(kernel_mod, "LOW_RANK_MIN_ROWS", 0)  # the low rank wherever it applies
    fast = _values(narrow32, keep)
    plain = _values(narrow32, ())
    with float64(narrow32):
        ref = _values(narrow32, ())
    assert len(set(ref)) > 1  # the candidates differ
    # bound: 4x the plain float32 path's error + 16 eps x (log vocab + max|logit|)
    assert_close_to_f64(fast, plain, ref, _scale(narrow32), factor=FACTOR, ulps=ULPS,
                        what=f"ACDC candidates with {keep}")


def _quiet(fn, problem, tau):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruneWarning)
        return fn(problem, AcdcConfig(tau, progress=False))


@pytest.mark.parametrize("tau", [-1e9, 0.002])  # keep every edge; keep 50 of 262 tested
def test_fast_acdc_against_the_reference_in_float64(narrow32, tau, monkeypatch):
    """Every tested edge's damage: the fast engine in float32, the reference (plain patched
    forward) in float32 and float64. The trajectories are the same when no float64 damage is
    within the bound of tau (checked), so the damages are comparable edge by edge."""
    monkeypatch.setattr(kernel_mod, "LOW_RANK_MIN_ROWS", 0)
    fast = _quiet(acdc, make_problem(narrow32, n=6, batch_size=3), tau)
    assert fast.info["low_rank_evaluations"] > 0 or tau < 0  # 132 of them at tau 0.002
    plain = _quiet(acdc_naive, make_problem(narrow32, n=6, batch_size=3).with_context(
        node_fastpath=False), tau)  # the plain patched forward: edge by edge
    with float64(narrow32):
        ref = _quiet(acdc_naive, make_problem(narrow32, n=6, batch_size=3).with_context(
            node_fastpath=False), tau)
    tested = ~torch.isnan(ref.scores)
    margin = float((ref.scores[tested].double() - tau).abs().min())  # 4.1e-5 at tau 0.002
    assert margin > f32_bound(ref.scores[tested], _scale(narrow32), ulps=ULPS)  # no tie
    assert fast.decisions == plain.decisions == ref.decisions
    assert torch.equal(tested, ~torch.isnan(fast.scores)) and tested.sum() > 0
    # bound: 4x the plain float32 path's error + 16 eps x (log vocab + max|logit|); scores are
    # stored in float32, so the reference carries 1 ulp of its own
    assert_close_to_f64(fast.scores[tested], plain.scores[tested], ref.scores[tested],
                        _scale(narrow32), factor=FACTOR, ulps=ULPS, what=f"tau {tau:g}")
