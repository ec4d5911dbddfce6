"""Node-level circuits (MIB's node level): whole heads and MLPs kept or removed.

A node circuit's mask must ablate exactly its removed nodes' outputs, so its metric equals the
edge-level circuit that removes every edge out of each removed node (the issue's check); node
scores are sums of edge scores, so node-level EAP is the first-order effect of ablating a node;
and the options are checked before any work.
"""

from __future__ import annotations

import pytest
import torch

from acdc_engine import discover
from acdc_engine.errors import AcdcError
from acdc_engine.evaluation.levels import (check_level, node_curve, node_keep, node_scores,
                                           nodes_kept, top_nodes)
from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.scoring import attribute
from acdc_engine.tasks import prepare
from acdc_engine.testing import random_pairs
from acdc_engine.testing.numerics import assert_close_to_f64, float64


@pytest.fixture(scope="module")
def problem(gpt2):
    data = prepare("t", gpt2.tokenizer, random_pairs(8, seed=3))
    return Problem.build(gpt2, data, registry().metric("logit_diff"), "corrupted",
                         batch_size=4)


def test_node_scores_sum_each_nodes_outgoing_edges(problem):
    g = problem.graph
    scores = torch.randn(g.n_edges, generator=torch.Generator().manual_seed(0))
    scores[3] = float("nan")  # an edge never tested counts as 0
    got = node_scores(g, scores)
    w, _ = g.coords
    for u in range(g.n_writers):
        want = sum(0.0 if torch.isnan(s) else float(s) for s in scores[w == u])
        assert got[u].item() == pytest.approx(want, rel=1e-12, abs=1e-12)


def test_node_mask_ablates_exactly_the_removed_nodes(problem):
    """The node circuit's metric equals the edge circuit that removes every edge out of each
    removed node (the mask of the node level also drops the kept nodes' edges into removed
    nodes, whose outputs are ablated whatever they read)."""
    g = problem.graph
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        kept = torch.rand(g.n_writers, generator=gen) < 0.5
        kept[0] = True
        node_mask = g.mask_from_edges(node_keep(g, kept))
        w, _ = g.coords
        rows = g.mask_from_edges(kept[w])  # every edge out of a removed node removed, no more
        a, b = problem.evaluate([node_mask, rows])
        with float64(problem.model):
            ref = problem.evaluate([node_mask])[0]  # both masks' exact value
        # the same function of the inputs; the node mask's correction products run over more
        # writer rows (with coefficient 0 for kept readers), so float32 sums round differently:
        # bound: 4x the rows mask's float32 error against float64 + 16 eps |value|
        assert_close_to_f64(a, b, ref, factor=4, ulps=16)
    every = torch.ones(g.n_writers, dtype=torch.bool)
    assert problem.evaluate([g.mask_from_edges(node_keep(g, every))]) == problem.evaluate([None])


def test_node_eap_is_the_first_order_effect_of_ablating_the_node(problem):
    """EAP at the node level: the derivative of the metric along the node's output moving to its
    ablated value, taken directly with one scale per writer, equals the summed edge scores."""
    g, model = problem.graph, problem.model
    edge = attribute(problem, "eap", progress=False)
    got = node_scores(g, edge)
    total = torch.zeros(g.n_writers, dtype=torch.float64)
    with model.frozen():
        for i, batch in enumerate(problem.batches):
            alpha = torch.ones(g.n_writers, requires_grad=True)  # one scale per writer
            mask = alpha[:, None].expand(g.n_writers, g.n_readers)
            problem.score(batch, mask, problem.ablated(i)).sum().backward()
            total -= alpha.grad.double()  # removing the node: alpha 1 -> 0
    total /= problem.n_examples
    scale = float(total.abs().max())
    assert scale > 0
    # two float32 sums of the same products in another order: a few ulps of the largest term
    assert float((got - total).abs().max()) <= 64 * 1.2e-7 * scale * g.n_readers ** 0.5


def test_top_nodes_and_the_curve_count_nodes(problem):
    g = problem.graph
    scores = attribute(problem, "eap", progress=False)
    ns = node_scores(g, scores)
    kept = top_nodes(g, ns, 3)
    assert kept[0] and int(kept[1:].sum()) == 3
    assert set(kept.nonzero()[:, 0].tolist()) == {0} | set(
        (ns[1:].abs().topk(3).indices + 1).tolist())  # the input and the 3 largest |scores|
    curve, keeps, _ = node_curve(problem, scores, (10, 50, 100), progress=False)
    assert curve.unit == "nodes" and curve.n_edges_total == g.n_writers - 1
    assert curve.n_edges[-1] == g.n_writers - 1 and curve.normalized[-1] == pytest.approx(1.0)
    assert all(nodes_kept(g, k) == n for k, n in zip(keeps, curve.n_edges))
    assert "nodes" in curve.table()


def test_discover_at_the_node_level(tmp_path):
    r = discover(model="tiny-ioi", task="ioi", method="eap", level="node", n_nodes=4,
                 track=False, out=tmp_path / "run", render=False, progress=False, n_examples=16)
    g = r.circuit.graph
    assert r.circuit.attrs["level"] == "node" and r.circuit.attrs["n_nodes_kept"] <= 4
    assert r.curve.unit == "nodes"
    kept = torch.zeros(g.n_writers, dtype=torch.bool)
    kept[0] = True
    w, _ = g.coords
    kept[w[r.circuit.keep]] = True
    # every edge between kept nodes (and to the logits) is in the circuit, after pruning
    assert torch.equal(r.circuit.keep, r.circuit.keep & node_keep(g, kept))


@pytest.mark.parametrize("kw, match", [
    (dict(level="node", n_edges=5), "sized in units"),
    (dict(level="edge", n_nodes=5), "add level='node'"),
    (dict(level="node", n_nodes=2, selection="ilp"), "works on edges"),
    (dict(level="neurons"), "unknown level"),
    (dict(level="neuron", method="eap-ig"), "method eap"),
    (dict(level="node", n_nodes=-1), "whole number"),
])
def test_bad_level_options_are_refused_before_any_work(kw, match):
    with pytest.raises(AcdcError, match=match):
        discover(model="no-such-model-is-loaded", task="ioi", track=False, **kw)


def test_check_level_names_the_selection():
    assert check_level("edge", None, 5, None, None) == ""
    assert check_level("node", None, None, 3, None) == "topk"
    assert check_level("node", None, None, None, 0.1) == "threshold"
    assert check_level("node", "target", None, None, None) == "target"
