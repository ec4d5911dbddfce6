"""ACDC: the fast implementation decides exactly like the naive reference; checkpoints resume;
the guided hybrid verifies every removal; thresholds that prune all or nothing say so."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from acdc_engine import load_model
from acdc_engine.graph import Graph
from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.scoring.acdc import (
    AcdcConfig,
    Guide,
    PruneWarning,
    acdc,
    acdc_naive,
    visit_order,
)
from acdc_engine.tasks import Task, prepare
from acdc_engine.testing import random_pairs, save_gpt2
from acdc_engine.testing.numerics import f32_bound, max_error


@pytest.fixture(scope="module")
def model64(tmp_path_factory):
    """3 layers x 3 heads in float64, so fast and naive cannot differ by a rounding tie."""
    path = save_gpt2(tmp_path_factory.mktemp("gpt2-acdc"), n_layer=3, n_head=3, n_embd=24,
                     seed=1)
    return load_model(str(path), device="cpu", dtype=torch.float64)


def _problem(model, metric_name="kl_div", ablation="corrupted", n=10, batch_size=4, seed=0):
    metric = registry().metric(metric_name)
    data = prepare("rand", model.tokenizer, random_pairs(n, seed=seed))
    return Problem.build(model, data, metric, ablation, batch_size)  # 3 batches: 4 + 4 + 2 rows


def _quiet(fn, problem, tau, **settings):
    """``fn(problem, AcdcConfig(tau, **settings))`` without PruneWarnings or progress bars."""
    settings.setdefault("progress", False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruneWarning)
        return fn(problem, AcdcConfig(tau, **settings))


def test_visit_order_covers_every_edge_once():
    g = Graph(3, 2)
    order = visit_order(g)
    assert [g.nodes[n].name for n, _ in order[:4]] == ["logits", "m2", "a2.1", "a2.0"]
    seen = [e for _, edges in order for e in edges]
    assert sorted(seen) == list(range(g.n_edges))
    first = [g.edges[e].name for e in order[2][1][:2]]  # a2.1: q input, nearest writer first
    assert first == ["m1->a2.1<q>", "a1.1->a2.1<q>"]


@pytest.mark.parametrize("metric_name, ablation, taus", [
    ("kl_div", "corrupted", (0.002, 0.01, 0.05)),
    ("logit_diff", "mean", (0.003, 0.03)),
    ("kl_div", "zero", (0.003,)),
])
def test_fast_acdc_equals_naive(model64, metric_name, ablation, taus):
    problem = _problem(model64, metric_name, ablation)
    for tau in taus:
        ref = _quiet(acdc_naive, problem, tau)
        got = _quiet(acdc, problem, tau)
        assert got.decisions == ref.decisions, tau
        assert torch.equal(got.keep, ref.keep), tau
        # the model is float64, but the KL leaves kl_to_clean rounded to float32 and the
        # scores are stored in float32: 16 eps32 x max(|score|, |metric|) (a few float32
        # roundings of the largest value)
        bound = f32_bound(ref.scores, ref.metric_final, got.metric_final)
        assert max_error(got.scores, ref.scores) <= bound, tau
        assert 0 < ref.n_tested < model64.graph.n_edges  # dead nodes are skipped, not tested
        assert abs(got.metric_final - ref.metric_final) <= bound, tau


def test_family_head_kernel_is_used_only_when_it_matches(model64):
    """GPT-2's per-head kernel is picked (after the start-up check); one that disagrees with
    the adapter's own attn_heads is refused in favour of the whole-layer call."""
    from acdc_engine.scoring.acdc.kernel import head_kernel

    kernel, last_ok = head_kernel(model64)
    assert kernel == model64.adapter.attn_heads_subset and last_ok
    adapter = model64.adapter
    adapter.attn_heads_subset = lambda layer, heads, q, k, v: 2 * type(adapter).attn_heads_subset(
        adapter, layer, heads, q, k, v)
    try:
        kernel, last_ok = head_kernel(model64)
        assert kernel != adapter.attn_heads_subset and not last_ok
    finally:
        del adapter.attn_heads_subset


def test_speculation_and_memory_cap_do_not_change_the_answer(model64):
    problem = _problem(model64)
    ref = _quiet(acdc, problem, 0.003, speculate=1)
    wide = _quiet(acdc, problem, 0.003, speculate=64)
    tiny = _quiet(acdc, problem, 0.003, mem_budget_mb=1e-6)
    assert ref.decisions == wide.decisions == tiny.decisions
    assert ref.n_evaluations == ref.n_tested  # no speculation: one candidate per test
    assert wide.n_evaluations >= wide.n_tested


def test_final_metric_is_the_circuits_metric(model64):
    """The state the engine carries is the real patched model: m(final mask) agrees."""
    problem = _problem(model64)
    res = _quiet(acdc, problem, 0.004)
    (value,) = problem.evaluate([model64.graph.mask_from_edges(res.keep)])
    # float64 model, the KL rounded to float32 on the way out: 16 eps32 x |metric|
    assert abs(value - res.metric_final) <= f32_bound(value, res.metric_final)


def test_checkpoint_resume_gives_the_same_circuit(model64, tmp_path):
    problem = _problem(model64)
    tau = 0.002
    ref = _quiet(acdc, problem, tau)
    ckpt = tmp_path / "acdc.ckpt"

    class Stop(Exception):
        pass

    def stop_after(k):
        def cb(done):
            if done.position == k:
                raise Stop
        return cb

    with pytest.raises(Stop):  # interrupted after 5 nodes; checkpoints every 2
        _quiet(acdc, problem, tau, checkpoint=ckpt, checkpoint_every=2,
               callback=stop_after(5))
    assert ckpt.exists() and not list(tmp_path.glob("*.tmp*"))
    visited = []
    res = _quiet(acdc, problem, tau, checkpoint=ckpt,
                 callback=lambda d: visited.append(d.position))
    assert res.info["resumed_from"] == 5  # the interruption saved the last finished node
    assert visited[0] == 6  # nothing before it was repeated
    assert res.decisions == ref.decisions and torch.equal(res.keep, ref.keep)
    again = _quiet(acdc, problem, tau, checkpoint=ckpt)
    assert again.n_evaluations == res.n_evaluations and torch.equal(again.keep, ref.keep)
    from acdc_engine.errors import AcdcError

    with pytest.raises(AcdcError, match="different run.*tau"):
        acdc(problem, AcdcConfig(0.5, checkpoint=ckpt, progress=False))


def test_thresholds_that_prune_everything_or_nothing_say_so(model64):
    problem = _problem(model64)
    with pytest.warns(PruneWarning, match=r"pruned every edge.*try tau between"):
        res = acdc(problem, AcdcConfig(10.0, progress=False))
    assert res.n_kept == 0
    lo, hi = res.info["suggested_tau_low"], res.info["suggested_tau_high"]
    assert 0 < lo <= hi < 10.0
    with pytest.warns(PruneWarning, match="pruned nothing"):
        res = acdc(problem, AcdcConfig(-10.0, progress=False))
    assert res.n_kept == model64.graph.n_edges


def test_guided_with_uninformative_estimates_is_plain_acdc(model64):
    problem = _problem(model64)
    zeros = torch.zeros(model64.graph.n_edges)
    ref = _quiet(acdc, problem, 0.003)
    got = _quiet(acdc, problem, 0.003, guide=Guide(zeros, keep_factor=None, group_fraction=0.0))
    assert got.decisions == ref.decisions and torch.equal(got.keep, ref.keep)


def test_guided_verifies_every_removal(model64):
    from acdc_engine.scoring import attribute

    problem = _problem(model64)
    est = attribute(problem, method="eap-ig", ig_steps=3, progress=False)
    tau = 0.003
    res = _quiet(acdc, problem, tau, guide=Guide(est))
    plain = _quiet(acdc, problem, tau)
    assert res.info["group_removals"] >= 1
    assert res.n_evaluations < plain.n_evaluations  # groups save single tests
    (value,) = problem.evaluate([model64.graph.mask_from_edges(res.keep)])
    # float64 model, the KL rounded to float32 on the way out: 16 eps32 x |metric|
    assert abs(value - res.metric_final) <= f32_bound(value, res.metric_final)
    # each accepted test (single or group) raised KL by < tau: the total is bounded
    n_accepted_tests = res.n_evaluations
    assert res.metric_final - res.metric_full < tau * n_accepted_tests


def test_discover_runs_acdc_like_any_method(gpt2_path, tmp_path):
    from acdc_engine import discover

    task = Task("rand", lambda n, s: random_pairs(n or 12, seed=s), model=str(gpt2_path))
    m = registry().method("acdc")
    assert m.selects_circuit and "tau" in m.defaults
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruneWarning)
        res = discover(task=task, method="acdc", settings={"tau": 0.005}, out=tmp_path,
                       progress=False, track=False)
        guided = discover(task=task, method="acdc-guided", settings={"tau": 0.005},
                          progress=False, track=False, curve=False)
    data = json.loads((tmp_path / "circuit.json").read_text())
    assert data["graph"]["method"] == "acdc" and data["graph"]["tau"] == 0.005
    kept = res.info["acdc_kept"]
    assert 0 < res.circuit.number_of_edges() <= kept < res.graph.n_edges
    assert res.info["acdc_tested"] > 0
    assert guided.circuit.number_of_edges() > 0


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_fast_acdc_equals_naive_on_other_families(tmp_path, model_type):
    """Families without a per-head kernel take the adapter's whole-layer path; batches of
    several prompt lengths exercise adapters that keep per-length state (rotary tables)."""
    from acdc_engine.testing import save_llama

    path = save_llama(tmp_path / model_type, model_type=model_type, seed=2)
    model = load_model(str(path), device="cpu", dtype=torch.float64)
    metric = registry().metric("kl_div")
    rows = random_pairs(6, length=5, seed=1) + random_pairs(6, length=7, seed=2)
    problem = Problem.build(model, prepare("rand", model.tokenizer, rows), metric,
                            "corrupted", batch_size=4)
    assert len({b.clean.shape[1] for b in problem.batches}) == 2
    for tau in (0.002, 0.02):
        ref = _quiet(acdc_naive, problem, tau)
        got = _quiet(acdc, problem, tau)
        assert got.decisions == ref.decisions and torch.equal(got.keep, ref.keep), tau


@pytest.mark.slow
@pytest.mark.parametrize("metric_name, abs_value", [("kl_div", False), ("logit_diff", True),
                                                    ("logit_diff", False)])
def test_fast_acdc_equals_naive_on_a_wider_model(tmp_path, metric_name, abs_value):
    path = save_gpt2(tmp_path / "m", n_layer=4, n_head=4, n_embd=32, seed=3)
    model = load_model(str(path), device="cpu", dtype=torch.float64)
    problem = _problem(model, metric_name, "corrupted", n=12, seed=4)
    for tau in (0.0005, 0.002, 0.01, 0.05):
        ref = _quiet(acdc_naive, problem, tau, abs_value=abs_value)
        got = _quiet(acdc, problem, tau, abs_value=abs_value)
        assert got.decisions == ref.decisions and torch.equal(got.keep, ref.keep), tau
