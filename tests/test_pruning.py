"""ACDC: the fast implementation decides exactly like the naive reference; checkpoints resume;
the guided hybrid verifies every removal; thresholds that prune all or nothing say so."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from acdc_engine import discover
from acdc_engine.evaluation import evaluate_masks, make_batches
from acdc_engine.graph import Graph
from acdc_engine.models import load_model
from acdc_engine.patching import Ablation
from acdc_engine.plugins import registry
from acdc_engine.pruning import (
    PruneWarning,
    acdc,
    acdc_guided,
    acdc_naive,
    visit_order,
    with_clean_logits,
)
from acdc_engine.tasks import Task, prepare
from conftest import random_pairs, save_gpt2


@pytest.fixture(scope="module")
def model64(tmp_path_factory):
    """3 layers x 3 heads in float64, so fast and naive cannot differ by a rounding tie."""
    path = save_gpt2(tmp_path_factory.mktemp("gpt2-acdc"), n_layer=3, n_head=3, n_embd=24,
                     seed=1)
    return load_model(str(path), device="cpu", dtype=torch.float64)


def _setup(model, metric_name="kl_div", ablation="corrupted", n=10, batch_size=4, seed=0):
    metric = registry().metric(metric_name)
    data = prepare("rand", model.tokenizer, random_pairs(n, seed=seed))
    batches = make_batches(model, data, metric, batch_size)  # 3 batches: 4 + 4 + 2 rows
    return batches, metric, Ablation(ablation).fit(model.adapter, batches)


def _quiet(fn, *a, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruneWarning)
        return fn(*a, **kw)


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
    batches, metric, abl = _setup(model64, metric_name, ablation)
    for tau in taus:
        ref = _quiet(acdc_naive, model64, batches, metric, abl, tau)
        got = _quiet(acdc, model64, batches, metric, abl, tau, progress=False)
        assert got.decisions == ref.decisions, tau
        assert torch.equal(got.keep, ref.keep), tau
        assert torch.allclose(got.scores, ref.scores, atol=1e-6)
        assert 0 < ref.n_tested < model64.graph.n_edges  # dead nodes are skipped, not tested
        assert got.metric_final == pytest.approx(ref.metric_final, abs=1e-7)


def test_family_head_kernel_is_used_only_when_it_matches(model64):
    """GPT-2's per-head kernel is picked (after the start-up check); one that disagrees with
    the adapter's own attn_heads is refused in favour of the whole-layer call."""
    from acdc_engine.pruning import _head_kernel

    kernel, last_ok = _head_kernel(model64)
    assert kernel == model64.adapter.attn_heads_subset and last_ok
    adapter = model64.adapter
    adapter.attn_heads_subset = lambda layer, heads, q, k, v: 2 * type(adapter).attn_heads_subset(
        adapter, layer, heads, q, k, v)
    try:
        kernel, last_ok = _head_kernel(model64)
        assert kernel != adapter.attn_heads_subset and not last_ok
    finally:
        del adapter.attn_heads_subset


def test_speculation_and_memory_cap_do_not_change_the_answer(model64):
    batches, metric, abl = _setup(model64)
    ref = _quiet(acdc, model64, batches, metric, abl, 0.003, speculate=1, progress=False)
    wide = _quiet(acdc, model64, batches, metric, abl, 0.003, speculate=64, progress=False)
    tiny = _quiet(acdc, model64, batches, metric, abl, 0.003, mem_budget_mb=1e-6,
                  progress=False)
    assert ref.decisions == wide.decisions == tiny.decisions
    assert ref.n_evaluations == ref.n_tested  # no speculation: one candidate per test
    assert wide.n_evaluations >= wide.n_tested


def test_final_metric_is_the_circuits_metric(model64):
    """The state the engine carries is the real patched model: m(final mask) agrees."""
    batches, metric, abl = _setup(model64)
    batches = with_clean_logits(model64, batches, metric)
    res = _quiet(acdc, model64, batches, metric, abl, 0.004, progress=False)
    (value,) = evaluate_masks(model64, batches, metric, abl,
                              [model64.graph.mask_from_edges(res.keep)], progress=False)
    assert value == pytest.approx(res.metric_final, abs=1e-9)


def test_checkpoint_resume_gives_the_same_circuit(model64, tmp_path):
    batches, metric, abl = _setup(model64)
    tau = 0.002
    ref = _quiet(acdc, model64, batches, metric, abl, tau, progress=False)
    ckpt = tmp_path / "acdc.ckpt"

    class Stop(Exception):
        pass

    def stop_after(k):
        def cb(done):
            if done.position == k:
                raise Stop
        return cb

    with pytest.raises(Stop):  # interrupted after 5 nodes; checkpoints every 2
        _quiet(acdc, model64, batches, metric, abl, tau, checkpoint=ckpt, checkpoint_every=2,
               callback=stop_after(5), progress=False)
    assert ckpt.exists() and not list(tmp_path.glob("*.tmp*"))
    visited = []
    res = _quiet(acdc, model64, batches, metric, abl, tau, checkpoint=ckpt,
                 callback=lambda d: visited.append(d.position), progress=False)
    assert res.info["resumed_from"] == 5  # the interruption saved the last finished node
    assert visited[0] == 6  # nothing before it was repeated
    assert res.decisions == ref.decisions and torch.equal(res.keep, ref.keep)
    again = _quiet(acdc, model64, batches, metric, abl, tau, checkpoint=ckpt, progress=False)
    assert again.n_evaluations == res.n_evaluations and torch.equal(again.keep, ref.keep)
    from acdc_engine.errors import AcdcError

    with pytest.raises(AcdcError, match="different run.*tau"):
        acdc(model64, batches, metric, abl, 0.5, checkpoint=ckpt, progress=False)


def test_thresholds_that_prune_everything_or_nothing_say_so(model64):
    batches, metric, abl = _setup(model64)
    with pytest.warns(PruneWarning, match=r"pruned every edge.*try tau between"):
        res = acdc(model64, batches, metric, abl, 10.0, progress=False)
    assert res.n_kept == 0
    lo, hi = res.info["suggested_tau_low"], res.info["suggested_tau_high"]
    assert 0 < lo <= hi < 10.0
    with pytest.warns(PruneWarning, match="pruned nothing"):
        res = acdc(model64, batches, metric, abl, -10.0, progress=False)
    assert res.n_kept == model64.graph.n_edges


def test_guided_with_uninformative_estimates_is_plain_acdc(model64):
    batches, metric, abl = _setup(model64)
    zeros = torch.zeros(model64.graph.n_edges)
    ref = _quiet(acdc, model64, batches, metric, abl, 0.003, progress=False)
    got = _quiet(acdc_guided, model64, batches, metric, abl, 0.003, zeros, keep_factor=None,
                 group_fraction=0.0, progress=False)
    assert got.decisions == ref.decisions and torch.equal(got.keep, ref.keep)


def test_guided_verifies_every_removal(model64):
    from acdc_engine.attribution import attribute

    batches, metric, abl = _setup(model64)
    batches = with_clean_logits(model64, batches, metric)
    est = attribute(model64, batches, metric, abl, method="eap-ig", ig_steps=3, progress=False)
    tau = 0.003
    res = _quiet(acdc_guided, model64, batches, metric, abl, tau, est, progress=False)
    plain = _quiet(acdc, model64, batches, metric, abl, tau, progress=False)
    assert res.info["group_removals"] >= 1
    assert res.n_evaluations < plain.n_evaluations  # groups save single tests
    (value,) = evaluate_masks(model64, batches, metric, abl,
                              [model64.graph.mask_from_edges(res.keep)], progress=False)
    assert value == pytest.approx(res.metric_final, abs=1e-9)
    # each accepted test (single or group) raised KL by < tau: the total is bounded
    n_accepted_tests = res.n_evaluations
    assert res.metric_final - res.metric_full < tau * n_accepted_tests


def test_discover_runs_acdc_like_any_method(gpt2_path, tmp_path):
    task = Task("rand", lambda n, s: random_pairs(n or 12, seed=s), model=str(gpt2_path))
    m = registry().method("acdc")
    assert m.selects_circuit and "tau" in m.defaults
    res = _quiet(discover, task=task, method="acdc", settings={"tau": 0.005}, out=tmp_path,
                 progress=False, track=False)
    data = json.loads((tmp_path / "circuit.json").read_text())
    assert data["graph"]["method"] == "acdc" and data["graph"]["tau"] == 0.005
    kept = res.info["acdc_kept"]
    assert 0 < res.circuit.number_of_edges() <= kept < res.graph.n_edges
    assert res.info["acdc_tested"] > 0
    guided = _quiet(discover, task=task, method="acdc-guided", settings={"tau": 0.005},
                    progress=False, track=False, curve=False)
    assert guided.circuit.number_of_edges() > 0


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
def test_fast_acdc_equals_naive_on_other_families(tmp_path, model_type):
    """Families without a per-head kernel take the adapter's whole-layer path; batches of
    several prompt lengths exercise adapters that keep per-length state (rotary tables)."""
    from conftest import save_llama

    path = save_llama(tmp_path / model_type, model_type=model_type, seed=2)
    model = load_model(str(path), device="cpu", dtype=torch.float64)
    metric = registry().metric("kl_div")
    rows = random_pairs(6, length=5, seed=1) + random_pairs(6, length=7, seed=2)
    batches = make_batches(model, prepare("rand", model.tokenizer, rows), metric, 4)
    assert len({b.clean.shape[1] for b in batches}) == 2
    abl = Ablation("corrupted")
    for tau in (0.002, 0.02):
        ref = _quiet(acdc_naive, model, batches, metric, abl, tau)
        got = _quiet(acdc, model, batches, metric, abl, tau, progress=False)
        assert got.decisions == ref.decisions and torch.equal(got.keep, ref.keep), tau


@pytest.mark.slow
@pytest.mark.parametrize("metric_name, abs_value", [("kl_div", False), ("logit_diff", True),
                                                    ("logit_diff", False)])
def test_fast_acdc_equals_naive_on_a_wider_model(tmp_path, metric_name, abs_value):
    path = save_gpt2(tmp_path / "m", n_layer=4, n_head=4, n_embd=32, seed=3)
    model = load_model(str(path), device="cpu", dtype=torch.float64)
    batches, metric, abl = _setup(model, metric_name, "corrupted", n=12, seed=4)
    for tau in (0.0005, 0.002, 0.01, 0.05):
        ref = _quiet(acdc_naive, model, batches, metric, abl, tau, abs_value=abs_value)
        got = _quiet(acdc, model, batches, metric, abl, tau, abs_value=abs_value,
                     progress=False)
        assert got.decisions == ref.decisions and torch.equal(got.keep, ref.keep), tau
