"""Selections besides top-n: the ILP against brute force, positive-first order, ensembles,
bootstrap-consistent edges (acdc_engine.evaluation.selection)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from acdc_engine.circuit import prune_dead, select
from acdc_engine.errors import AcdcError
from acdc_engine.api.selected import Member, SelectedMethod
from acdc_engine.evaluation.selection import (
    check_selection,
    consistent_edges,
    edge_frequency,
    ensemble_scores,
    ilp_select,
    normalise,
    positive_first,
    positive_order,
    resample,
)
from acdc_engine.graph import Graph


def _all_subsets(n: int) -> np.ndarray:
    return np.array(list(itertools.product([False, True], repeat=n)), dtype=bool)


def _locally_connected(graph: Graph, masks: np.ndarray) -> np.ndarray:
    """Per subset: every kept edge has a kept edge into its source (or the source is the
    input) and a kept edge out of its destination (or that is the logits)."""
    w, r = graph.coords
    src, dst = w.numpy(), np.asarray(graph.slot_node)[r.numpy()]
    last = len(graph.nodes) - 1
    ok = np.ones(len(masks), dtype=bool)
    for e in range(graph.n_edges):
        has_in = src[e] == 0 or masks[:, dst == src[e]].any(1)
        has_out = dst[e] == last or masks[:, src == dst[e]].any(1)
        ok &= ~masks[:, e] | (has_in & has_out)
    return ok


def _brute_force(graph: Graph, scores: torch.Tensor, budget: int) -> float:
    masks = _all_subsets(graph.n_edges)
    ok = _locally_connected(graph, masks) & (masks.sum(1) <= budget)
    values = masks[ok].astype(float) @ scores.abs().double().numpy()
    return float(values.max())


@pytest.mark.parametrize("graph", [Graph(1, 2), Graph(2, 1, attn_only=True)],
                         ids=["1x2+mlp", "2x1-attn-only"])
def test_ilp_equals_brute_force(graph):
    gen = torch.Generator().manual_seed(0)
    for trial in range(6):
        scores = torch.randn(graph.n_edges, generator=gen)
        for budget in (1, 2, 3, 5, 8, graph.n_edges):
            keep = ilp_select(graph, scores, budget)
            got = float(scores.abs().double()[keep].sum())
            assert got == pytest.approx(_brute_force(graph, scores, budget), abs=1e-9), \
                (trial, budget)
            assert int(keep.sum()) <= budget
            assert torch.equal(prune_dead(graph, keep), keep)  # connected: nothing to prune


def test_connected_means_what_prune_dead_keeps():
    # the ILP's local constraints describe exactly the circuits prune_dead leaves unchanged
    graph = Graph(2, 1, attn_only=True)
    masks = _all_subsets(graph.n_edges)
    local = _locally_connected(graph, masks)
    fixed = np.array([torch.equal(prune_dead(graph, torch.from_numpy(m)), torch.from_numpy(m))
                      for m in masks])
    assert (local == fixed).all()


def test_ilp_beats_top_n_then_prune():
    g = Graph(2, 2)
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        s = torch.randn(g.n_edges, generator=gen)
        for b in (3, 6, 12):
            ilp = ilp_select(g, s, b)
            top = prune_dead(g, select(g, s, n_edges=b))
            assert s.abs()[ilp].sum() >= s.abs()[top].sum() - 1e-6
            assert torch.equal(prune_dead(g, ilp), ilp) and int(ilp.sum()) <= b


def test_positive_first_orders_positive_edges_first():
    s = torch.tensor([-5.0, 0.5, 2.0, -0.1, 0.0, float("nan"), 1.0, -3.0])
    order = positive_order(s).tolist()
    assert order == [2, 6, 1, 0, 7, 3, 4, 5]  # positives by score, then |score|, NaN last
    n_pos = int((s > 0).sum())
    assert all(s[i] > 0 for i in order[:n_pos]) and not any(s[i] > 0 for i in order[n_pos:])


def test_positive_first_circuit():
    g = Graph(1, 2)
    gen = torch.Generator().manual_seed(3)
    s = torch.randn(g.n_edges, generator=gen)
    n_pos = int((s > 0).sum())
    keep = positive_first(g, s, n_pos)
    raw = torch.zeros(g.n_edges, dtype=torch.bool)
    raw[s > 0] = True
    assert torch.equal(keep, prune_dead(g, raw))  # the positive edges, dead ends pruned
    assert not keep[s <= 0].any()


def test_ensemble_of_one_method_is_its_ranking():
    gen = torch.Generator().manual_seed(2)
    s = torch.randn(200, generator=gen)
    for how in ("mean", "min", "max"):
        for norm in ("max", "rank"):
            e = ensemble_scores([s], how, norm)
            assert torch.equal(torch.argsort(e.double(), stable=True, descending=True),
                               torch.argsort(s.abs().double(), stable=True, descending=True))
    g = Graph(2, 2)
    s = torch.randn(g.n_edges, generator=gen)
    assert torch.equal(select(g, ensemble_scores([s]), n_edges=10), select(g, s, n_edges=10))


def test_ensemble_combines_normalised_scores():
    a = torch.tensor([2.0, -1.0, 0.0, float("nan")])
    b = torch.tensor([10.0, 40.0, -20.0, 0.0])
    assert normalise(a).tolist() == [1.0, 0.5, 0.0, 0.0]
    assert normalise(b).tolist() == [0.25, 1.0, 0.5, 0.0]
    assert ensemble_scores([a, b], "mean").tolist() == pytest.approx([0.625, 0.75, 0.25, 0.0])
    assert ensemble_scores([a, b], "min").tolist() == pytest.approx([0.25, 0.5, 0.0, 0.0])
    assert ensemble_scores([a, b], "max").tolist() == pytest.approx([1.0, 1.0, 0.5, 0.0])
    assert normalise(b, "rank").tolist() == pytest.approx([0.5, 1.0, 0.75, 0.25])
    with pytest.raises(AcdcError, match="unknown ensemble"):
        ensemble_scores([a, b], "median")
    with pytest.raises(AcdcError, match="differ in shape"):
        ensemble_scores([a, b[:2]])


def test_bootstrap_keeps_edges_by_frequency():
    keeps = [torch.tensor(k, dtype=torch.bool) for k in
             ([1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 0, 1], [1, 0, 1, 0], [1, 1, 0, 0])]
    assert edge_frequency(keeps).tolist() == pytest.approx([1.0, 0.8, 0.4, 0.2])
    assert consistent_edges(keeps, 0.8).tolist() == [True, True, False, False]
    assert consistent_edges(keeps, 0.4).tolist() == [True, True, True, False]
    assert consistent_edges(keeps, 1.0).tolist() == [True, False, False, False]
    with pytest.raises(AcdcError, match="min_frequency"):
        consistent_edges(keeps, 0)


def test_check_selection_names_and_sizes():
    assert check_selection(None, 5, None) == "topk"
    assert check_selection(None, None, 0.1) == "threshold"
    assert check_selection(None, None, None) == "target"
    assert check_selection("ilp", 5, None) == "ilp"
    for bad, n, t, msg in [("greedy", 5, None, "unknown selection 'greedy'"),
                           ("ilp", None, None, "needs a number of edges"),
                           ("positive", None, 0.1, "needs a number of edges"),
                           ("bootstrap", None, None, "exactly one of"),
                           ("target", 5, None, "chooses the number of edges itself")]:
        with pytest.raises(AcdcError, match=msg):
            check_selection(bad, n, t)
    with pytest.raises(AcdcError, match="unknown ensemble"):
        check_selection(None, 5, None, ensemble="median")


# ----- on a model: resampling and the bootstrap selection with a known answer ------------------
@pytest.fixture(scope="module")
def problem(gpt2):
    from acdc_engine.patching import Ablation
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.tasks import prepare
    from acdc_engine.testing import random_pairs

    data = prepare("toy", gpt2.tokenizer, random_pairs(10, seed=3))
    return Problem.build(gpt2, data, registry().metric("logit_diff"), Ablation("corrupted"),
                         batch_size=4)


def test_resample_draws_with_replacement(problem):
    first = torch.cat([b.clean for b in problem.batches])
    r = resample(problem, seed=5)
    assert r.n_examples == problem.n_examples
    got = torch.cat([b.clean for b in r.batches])
    draw = torch.randint(0, 10, (10,), generator=torch.Generator().manual_seed(5)).tolist()
    assert len(set(draw)) < 10  # with replacement: some example drawn twice
    # each batch keeps the examples drawn from it, in the order drawn
    starts = [0, 4, 8, 10]
    order = [j for lo, hi in itertools.pairwise(starts) for j in draw if lo <= j < hi]
    assert [len(b) for b in problem.batches] == [4, 4, 2]
    assert torch.equal(got, first[order])


def test_bootstrap_selection_known_frequency(problem):
    """A method that scores edge 0 highest only when example 0 is in the data: edge 0's
    bootstrap frequency is the fraction of resamples that draw example 0."""
    from acdc_engine.scoring.base import Method, MethodOutput

    g = problem.graph
    clean = torch.cat([b.clean for b in problem.batches])
    ex0 = clean[0]
    assert int((clean == ex0).all(-1).sum()) == 1  # example 0 can be told apart
    e = g.edge_index["input->logits"]  # connected on its own: pruning never drops it

    def run(p, settings, progress):
        s = torch.linspace(1.0, 2.0, g.n_edges)
        has0 = any(bool((b.clean == ex0).all(-1).any()) for b in p.batches)
        s[e] = 10.0 if has0 else 0.0
        return MethodOutput(s)

    m = Method("fake", run)
    n = 12
    from acdc_engine.api.config import DiscoverConfig

    cfg = DiscoverConfig(n_edges=3, bootstrap=n, min_frequency=0.5, seed=7)
    sm = SelectedMethod([Member(m, m.configure({}))], "bootstrap", cfg)
    keep = sm.choose(problem, m.run(problem, None, False).scores)
    draws0 = [0 in torch.randint(0, 10, (10,), generator=torch.Generator().manual_seed(7 + i))
              .tolist() for i in range(n)]
    assert 0 < sum(draws0) < n  # the case tests something
    assert float(sm.frequency[e]) == pytest.approx(sum(draws0) / n)
    assert bool(keep[e]) == (sum(draws0) / n >= 0.5)
    assert sm.info["bootstrap_resamples"] == n
    # the evidence tools' Stability of the same circuits counts the same frequencies
    freq = sm.stability.frequency()
    assert freq["input->logits"] == pytest.approx(sum(draws0) / n)
    assert all(freq[g.edges[i].name] == pytest.approx(float(sm.frequency[i]))
               for i in sm.frequency.nonzero()[:, 0].tolist())
    assert sm.stability.kind == "bootstrap resamples" and len(sm.stability.circuits) == n


def test_ilp_stopped_early_is_never_worse_than_top_n():
    g = Graph(6, 6)
    s = torch.randn(g.n_edges, generator=torch.Generator().manual_seed(4)).abs() ** 3
    for limit in (1e-4, None):
        info = {}
        keep = ilp_select(g, s, 60, time_limit=limit, info=info)
        top = prune_dead(g, select(g, s, n_edges=60))
        assert set(info) == {"ilp_optimal", "ilp_objective", "ilp_fallback"}
        assert info["ilp_objective"] >= float(s.double()[top].sum()) - 1e-9
        assert torch.equal(prune_dead(g, keep), keep) and int(keep.sum()) <= 60
    assert info["ilp_optimal"] and not info["ilp_fallback"]  # without a limit: solved
