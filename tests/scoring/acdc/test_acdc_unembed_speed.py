"""ACDC's unembedding shortcuts are exact: the reused logits buffer (``unembed_into``), the
metric read in row groups, and the low-rank unembedding of candidates whose final residual
changes only through heads (:mod:`acdc_engine.scoring.acdc.kernel`), down to ACDC's decisions."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from acdc_speed_problems import engine_at_head, make_problem

from acdc_engine.api import load_model
from acdc_engine.scoring.acdc import AcdcConfig, PruneWarning, acdc, acdc_naive
from acdc_engine.scoring.acdc import engine as engine_mod
from acdc_engine.scoring.acdc import kernel as kernel_mod
from acdc_engine.scoring.acdc.kernel import affine_unembedding, head_basis, head_kernel
from acdc_engine.testing.builders import save_hf
from acdc_engine.testing.numerics import assert_close_to_f64, f32_bound, float64

FAMILIES = ["gpt2", "llama", "gpt_neox", "gemma2", "opt", "phi3"]


def _quiet(fn, problem, tau, **settings):
    settings.setdefault("progress", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruneWarning)
        return fn(problem, AcdcConfig(tau, **settings))


@pytest.mark.parametrize("model_type", FAMILIES)
def test_unembed_into_and_unembed_linear_equal_the_unembedding(model_type, tmp_path):
    save_hf(tmp_path, model_type)
    adapter = load_model(str(tmp_path), device="cpu").adapter
    x = torch.randn(6, adapter.d_model, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = adapter.unembed(x[:, None])[:, 0]  # [6, vocab]
        out = torch.full_like(want, float("nan"))
        got = adapter.unembed_into(x, out)
        assert got.data_ptr() == out.data_ptr()
        # the same GEMM (these families' heads have no bias) and the same elementwise
        # soft-capping ops as unembed, into a given buffer: bit for bit
        assert torch.equal(out, want)
        parts = adapter.unembed_linear()
        if model_type in ("gemma2", "opt"):  # soft-capping; OPT's project_out
            assert parts is None
        else:
            norm, weight, bias = parts
            lin = torch.nn.functional.linear(norm(x), weight, bias)
            assert torch.equal(lin, want)  # unembed is this very linear: bit for bit
    # the low-rank unembedding takes LayerNorm families only
    assert (affine_unembedding(adapter) is not None) == (model_type in ("gpt2", "gpt_neox"))


def test_head_basis_is_the_span_of_the_heads_writes(narrow_heads, gpt2_3layer):
    kern, _ = head_kernel(narrow_heads)
    Q = head_basis(kern, narrow_heads.adapter, 1, 2, "cpu", torch.float64)
    assert Q.shape == (32, 8)  # d_head 8 in d_model 32
    # orthonormal in float64: each entry an inner product of d = 32 terms <= 1, so d eps64
    # per entry, x16 for the factorisation's own roundings
    eps64 = torch.finfo(torch.float64).eps
    assert (Q.T @ Q - torch.eye(8, dtype=torch.float64)).abs().max() <= 16 * 32 * eps64
    q, k, v = torch.randn(3, 1, 2, 5, 32, dtype=torch.float64)
    with torch.no_grad():
        narrow_heads.adapter.prepare(torch.zeros(2, 5, dtype=torch.long))
        o = kern(1, [2], q, k, v).reshape(-1, 32)
    # o is in the span: what is left is rounding of two float64 products over d = 32 terms
    # and Q's orthonormality error above, 16 d eps64 x max|o|
    assert (o - o @ Q @ Q.T).abs().max() <= 16 * 32 * eps64 * o.abs().max()
    # d_head 8 in d_model 24 is not small enough to pay (> d / 4)
    kern3, _ = head_kernel(gpt2_3layer)
    assert head_basis(kern3, gpt2_3layer.adapter, 0, 0, "cpu", torch.float32) is None


def _engine_at_head(model, layer, head):
    """An engine about to test head ``a{layer}.{head}``, whose only kept write is the logits."""
    return engine_at_head(make_problem(model), layer, head)


# tol: float32, 1e-6 = 2 ulps of log(vocab) ~ 3.7 (the float32 case is held to float64 below as
# well); float64 (None), 16 eps32 x max|KL|: the model computes in float64 but the KL leaves
# kl_to_clean rounded to float32, so two float64 paths may differ by a float32 rounding
@pytest.mark.parametrize("fixture, tol", [("narrow_heads", None), ("narrow_heads32", 1e-6)])
def test_low_rank_unembedding_equals_the_full_one(request, fixture, tol):
    """To rounding: the KL is a difference of terms as large as log(vocab), so its float32
    values carry an absolute error of a few 1e-7 whichever way the logits were formed."""
    eng, edges = _engine_at_head(request.getfixturevalue(fixture), 2, 1)
    assert all(st.low is not None for st in eng.states)
    sets = [edges[: j + 1] for j in range(len(edges))]  # q, k and v edges
    low = eng.evaluate(sets)
    assert eng.low_rank_evals == len(sets)
    for st in eng.states:
        st.low = None
    full = eng.evaluate(sets)
    assert eng.low_rank_evals == len(sets)  # the second evaluation unembedded at full rank
    diff = max(abs(a - b) for a, b in zip(low, full))
    tol = f32_bound(full) if tol is None else tol
    assert diff <= tol, (diff, full[:3])
    assert len(set(full)) > 1  # the candidates differ
    if fixture == "narrow_heads32":  # the full unembedding in float64 on the same inputs
        model = request.getfixturevalue(fixture)
        with float64(model):
            eng64, _ = _engine_at_head(model, 2, 1)
            for st in eng64.states:
                st.low = None
            ref = eng64.evaluate(sets)
        # bound: 4x the full-rank float32 error against float64 + 16 eps x log(vocab) (the KL
        # is a difference of terms of that size)
        assert_close_to_f64(low, full, ref, math.log(model.hf.config.vocab_size))


def test_a_write_outside_its_basis_falls_back_to_the_full_unembedding(narrow_heads,
                                                                      monkeypatch):
    eng, edges = _engine_at_head(narrow_heads, 2, 0)
    sets = [edges[:1], edges[:3]]
    want = eng.evaluate(sets)
    monkeypatch.setattr(kernel_mod, "BASIS_TOL", -1.0)  # no write is ever "in" its basis
    eng2, _ = _engine_at_head(narrow_heads, 2, 0)
    got = eng2.evaluate(sets)
    assert eng2.low_rank_evals == 0 and all(st.low is None for st in eng2.states)
    # float64 model, the KL rounded to float32 on the way out: 16 eps32 x max|KL|
    assert max(abs(a - b) for a, b in zip(got, want)) <= f32_bound(want)


def test_reading_the_logits_in_row_groups_changes_no_number(narrow_heads32, monkeypatch):
    for low_rank in (False, True):
        values = []
        for rows in (10**6, 3):
            monkeypatch.setattr(engine_mod, "SCORE_ROWS", rows)
            eng, edges = _engine_at_head(narrow_heads32, 1, 3)
            if not low_rank:
                for st in eng.states:
                    st.low = None
            values.append(eng.evaluate([edges[: j + 1] for j in range(7)]))
        assert values[0] == values[1], low_rank


def _same_as_naive(problem, taus, monkeypatch) -> int:
    monkeypatch.setattr(kernel_mod, "LOW_RANK_MIN_ROWS", 0)  # use it wherever it applies
    used = 0
    for tau in taus:
        ref = _quiet(acdc_naive, problem, tau)
        got = _quiet(acdc, problem, tau)
        used += got.info["low_rank_evaluations"]
        assert got.decisions == ref.decisions and torch.equal(got.keep, ref.keep), tau
        assert got.n_evaluations > got.info["low_rank_evaluations"]  # not every candidate
    return used


def test_fast_acdc_with_low_rank_unembedding_equals_naive(narrow_heads, monkeypatch):
    problem = make_problem(narrow_heads, n=6, batch_size=3)
    assert _same_as_naive(problem, [0.002], monkeypatch) > 20


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["narrow_heads", "narrow_heads32"])
def test_fast_acdc_with_low_rank_unembedding_equals_naive_at_several_taus(request, fixture,
                                                                         monkeypatch):
    problem = make_problem(request.getfixturevalue(fixture))
    assert _same_as_naive(problem, [0.0005, 0.002, 0.01], monkeypatch) > 50


def test_small_nodes_keep_the_full_unembedding(narrow_heads):
    """The per-node products cost about r + batch + 1 full-rank rows: a node with few edges
    to test is unembedded at full rank."""
    eng, edges = _engine_at_head(narrow_heads, 2, 1)
    v = eng.plan.v
    eng.end_node()
    assert eng.begin_node(v, expected=1)
    assert all(st.low is None for st in eng.states)


def test_query_edges_are_tested_as_query_rows_of_one_attention(narrow_heads, llama):
    """While a head's query edges are tested its keys and values are the current ones: the
    candidates' last queries go through one attention as query rows (GPT-2's kernel accepts
    them; the generic kernel does not), with the values of c separate copies, also when there
    are as many candidates as positions (padded, else the call would read as causal)."""
    assert kernel_mod.accepts_query_rows(narrow_heads, *head_kernel(narrow_heads))
    assert not kernel_mod.accepts_query_rows(llama, *head_kernel(llama))
    eng, edges = _engine_at_head(narrow_heads, 2, 1)
    assert eng.multi_query_ok
    p = eng.states[0].out.shape[2]
    n_q = eng.g.upstream_count(eng.plan.v_slots[0])  # the query edges come first
    for c in sorted({3, min(p, n_q)}):
        sets = [edges[: j + 1] for j in range(c)]
        rows = eng.evaluate(sets)
        eng.multi_query_ok = False
        copies = eng.evaluate(sets)
        eng.multi_query_ok = True
        # float64 model, the KL rounded to float32 on the way out: 16 eps32 x max|KL|
        assert max(abs(a - b) for a, b in zip(rows, copies)) <= f32_bound(copies), c
