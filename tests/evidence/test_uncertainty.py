"""Bootstrap intervals, circuit stability and the redundancy check."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.circuit import prune_dead, select
from acdc_engine.evaluation.curves import faithfulness_curve
from acdc_engine.evidence.uncertainty import (
    Stability,
    bootstrap,
    circuit_stability,
    curve_intervals,
    faithfulness_interval,
    gap_noise,
    method_agreement,
    per_example,
    redundancy,
    subsample,
)
from acdc_engine.scoring import attribute


def test_bootstrap_of_a_mean_contains_it_and_shrinks_with_more_examples():
    gen = torch.Generator().manual_seed(0)
    small = torch.randn(25, generator=gen) + 3.0
    big = torch.randn(400, generator=gen) + 3.0
    a, b = bootstrap(small), bootstrap(big)
    assert a.point == pytest.approx(float(small.double().mean()))
    assert a.contains(a.point) and b.contains(b.point)
    assert b.width < a.width / 2  # width ~ 1/sqrt(n): 4x the examples halves it at least
    assert b.contains(3.0)  # the true mean, at this seed
    assert b.width == pytest.approx(2 * 1.96 / 20, rel=0.25)  # the normal interval's width
    const = bootstrap(torch.full((10,), 2.0))
    assert (const.low, const.point, const.high) == (2.0, 2.0, 2.0)


def test_per_example_means_are_problem_evaluate(gpt2_problem):
    p = gpt2_problem
    g = p.graph
    keep = prune_dead(g, select(g, attribute(p, "eap"), n_edges=10))
    masks = [g.mask_from_edges(keep), None, p.empty_mask()]
    vals = per_example(p, masks)
    assert vals.shape == (3, p.n_examples)
    assert vals.mean(1).tolist() == pytest.approx(p.evaluate(masks), abs=1e-5)


def test_gap_noise_is_the_per_example_differences(gpt2_problem):
    v = per_example(gpt2_problem, [None, gpt2_problem.empty_mask()]).double()
    d = v[0] - v[1]
    g = gap_noise(gpt2_problem)
    assert g.n == d.numel() and g.gap == pytest.approx(float(d.mean()))
    assert g.se == pytest.approx(float(d.std()) / d.numel() ** 0.5)
    full, empty = gpt2_problem.evaluate([None, gpt2_problem.empty_mask()])
    assert g.gap == pytest.approx(full - empty, rel=1e-4, abs=1e-5)


def test_per_example_on_a_position_split_problem_is_problem_evaluate(gpt2):
    """Split masks [W, R, groups] need each token's group (before: run() refused them)."""
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.tasks import prepare
    from acdc_engine.testing import random_pairs

    data = prepare("t", gpt2.tokenizer, random_pairs(6, seed=2, length=5))
    p = Problem.build(gpt2, data, registry().metric("logit_diff"), "corrupted", batch_size=4,
                      positions="tokens")
    masks = [None, p.empty_mask()]
    assert per_example(p, masks).mean(1).tolist() == pytest.approx(p.evaluate(masks), abs=1e-5)


def test_faithfulness_interval_contains_the_point_and_shrinks(gpt2, behaving_problem):
    small, big = behaving_problem(gpt2, n=10), behaving_problem(gpt2, n=80, batch_size=40)
    g = gpt2.graph
    keep = prune_dead(g, select(g, attribute(big, "eap"), n_edges=12))
    mask = g.mask_from_edges(keep)
    ci_small = faithfulness_interval(small, mask)
    ci_big = faithfulness_interval(big, mask)
    assert ci_big.point == pytest.approx(big.faithfulness(mask).normalized, abs=1e-5)
    assert ci_big.contains(ci_big.point) and ci_small.contains(ci_small.point)
    assert ci_big.width < ci_small.width


def test_curve_intervals_agree_with_the_curve(gpt2_problem):
    p = gpt2_problem
    scores = attribute(p, "eap")
    budgets = (5, 20, 50, 100)
    ci = curve_intervals(p, scores, budgets, n_boot=200)
    curve, _, _ = faithfulness_curve(p, scores, budgets, progress=False)
    assert ci.cpr.point == pytest.approx(curve.cpr, abs=1e-5)
    assert ci.cmd.point == pytest.approx(curve.cmd, abs=1e-5)
    assert [i.point for i in ci.faithfulness] == pytest.approx(curve.normalized, abs=1e-5)
    assert ci.faithfulness[-1].width == pytest.approx(0.0, abs=1e-6)  # everything kept: 1.0
    assert ci.cpr.contains(ci.cpr.point) and ci.cpr.width > 0


def test_subsample_keeps_the_pairs_aligned(gpt2_problem):
    p = gpt2_problem
    sub = subsample(p, 0.5, seed=1)
    assert sub.n_examples == p.n_examples // 2
    rows = [r for b in sub.batches for r in b.rows]
    full = {r: v for r, v in zip([r for b in p.batches for r in b.rows],
                                 per_example(p, [None])[0].tolist())}
    got = per_example(sub, [p.empty_mask()])[0]  # uses the shared cached ablations
    want = per_example(subsample(p, 0.5, seed=1), [p.empty_mask()])[0]
    assert got.tolist() == pytest.approx(want.tolist())
    assert per_example(sub, [None])[0].tolist() == pytest.approx([full[r] for r in rows],
                                                                 abs=1e-5)
    # the empty circuit on the subsample is the corrupted run of the same rows
    for b, v in zip(sub.batches, got.split([len(b) for b in sub.batches])):
        ref = sub.metric(sub.model.reference_logits(b.corrupted)[:, -1], b)
        assert torch.allclose(v, ref, atol=1e-4)


def test_stability_numbers_and_sentences():
    st = Stability(["a", "b", "c"], [["a", "b", "c"], ["a", "b"], ["a", "d"]],
                   ["s1", "s2", "s3"])
    assert st.jaccard_to_reference == pytest.approx([1.0, 2 / 3, 1 / 4])
    assert st.dropped() == [("c", 2), ("b", 1)]
    assert st.frequency()["a"] == pytest.approx(1.0)
    assert st.mean_pairwise_jaccard == pytest.approx((2 / 3 + 1 / 4 + 1 / 3) / 3)
    text = " ".join(st.sentences())
    assert "2 of 3 subsamples drop edge c." in text and "1 of 3 edges are kept in all" in text


def test_circuit_stability_on_all_examples_is_perfect(gpt2_problem):
    p = gpt2_problem
    st = circuit_stability(p, "eap", n_edges=10, n=2, fraction=1.0)
    assert st.jaccard_to_reference == [1.0, 1.0]  # the same examples: the same circuit
    half = circuit_stability(p, "eap", n_edges=10, n=3, fraction=0.5)
    assert len(half.circuits) == 3 and all(0 <= j <= 1 for j in half.jaccard_to_reference)
    agree = method_agreement(p, ["eap", "eap"], n_edges=10)
    assert agree.mean_pairwise_jaccard == 1.0


def test_redundancy_flags_a_planted_backup(tracr, make_problem):
    """Two edges that each carry the same signal: with the other kept, one alone matters
    little; with its sibling gone, it matters. Planted by building a circuit of two parallel
    copies: input->logits plus input->m0->logits, in a model whose MLP copies its input."""
    p = make_problem(tracr, ablation="zero")
    g = p.graph
    keep = torch.zeros(g.n_edges, dtype=torch.bool)
    for name in ("input->logits", "input->m0", "m0->logits", "input->m1", "m1->logits"):
        keep[g.edge_index[name]] = True
    red = redundancy(p, keep)
    assert set(red.edges) <= {"input->logits", "m0->logits", "m1->logits"}
    vals = per_example(p, [g.mask_from_edges(keep), None, p.empty_mask()]).mean(1)
    d = float(vals[1] - vals[2])
    for e, a in zip(red.edges, red.alone):  # check one number by hand
        m = g.mask_from_edges(keep)
        i = g.edge_index[e]
        w, r = g.coords
        m[w[i], r[i]] = 0
        assert a == pytest.approx((float(vals[0]) - p.evaluate([m])[0]) / d, abs=1e-4)
    assert isinstance(red.sentences()[0], str)


class _OrProblem:
    """A stand-in problem whose metric is 1 when edge A or edge B is kept (a backup pair) plus
    0.5 per kept edge C (no backup): the redundancy check must flag A and B, not C."""

    def __init__(self, graph):
        self.graph = graph
        w, r = graph.coords
        self.at = {n: (int(w[graph.edge_index[n]]), int(r[graph.edge_index[n]]))
                   for n in ("input->logits", "a0.0->logits", "a0.1->logits")}

    def empty_mask(self):
        return torch.zeros(self.graph.n_writers, self.graph.n_readers)

    def evaluate(self, masks):
        out = []
        for m in masks:
            kept = {n: (m is None or bool(m[i, j])) for n, (i, j) in self.at.items()}
            out.append(float(kept["input->logits"] or kept["a0.0->logits"])
                       + 0.5 * kept["a0.1->logits"])
        return out


def test_redundancy_flags_exactly_the_backup_pair(tracr):
    g = tracr.graph
    keep = torch.zeros(g.n_edges, dtype=torch.bool)
    for name in ("input->logits", "a0.0->logits", "a0.1->logits", "input->a0.0<q>",
                 "input->a0.1<v>"):
        keep[g.edge_index[name]] = True
    red = redundancy(_OrProblem(g), keep)
    assert sorted(red.flagged) == ["a0.0->logits", "input->logits"]
    i = red.edges.index("a0.1->logits")
    assert red.alone[i] == pytest.approx(0.5 / 1.5) and red.with_siblings[i] == pytest.approx(
        0.5 / 1.5)
    j = red.edges.index("input->logits")
    assert red.alone[j] == 0.0 and red.with_siblings[j] == pytest.approx(1 / 1.5)
    assert "looks redundant" in red.sentences()[0]
