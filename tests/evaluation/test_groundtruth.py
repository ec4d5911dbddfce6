"""ROC AUC against a ground-truth circuit (acdc_engine.groundtruth), on hand examples."""

from __future__ import annotations

import json
import math

import pytest
import torch

from acdc_engine.errors import AcdcError
from acdc_engine.graph import Graph
from acdc_engine.evaluation.groundtruth import (
    GroundTruth,
    evaluate_ground_truth,
    load_ground_truth,
    node_scores,
    roc_auc,
)


def test_roc_auc_by_hand():
    # positives 0.9 and 0.7, negatives 0.8 and 0.1: of the 4 (pos, neg) pairs, 3 are ordered
    assert roc_auc([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == 0.75
    assert roc_auc([1, 2, 3, 4], [0, 0, 1, 1]) == 1.0
    assert roc_auc([1, 2, 3, 4], [1, 1, 0, 0]) == 0.0
    # a tie between a positive and a negative counts one half
    assert roc_auc([0.5, 0.5, 0.1], [1, 0, 0]) == 0.75
    assert roc_auc([0.0] * 5, [1, 0, 1, 0, 0]) == 0.5  # all tied: chance
    assert math.isnan(roc_auc([0.1, 0.2], [1, 1]))  # one class only
    assert roc_auc([float("nan"), 0.2], [1, 0]) == 0.0  # unscored ranks lowest


def test_roc_auc_matches_the_pairwise_definition():
    g = torch.Generator().manual_seed(0)
    s = torch.randint(0, 6, (40,), generator=g).double()
    y = torch.rand(40, generator=g) < 0.3
    pos, neg = s[y], s[~y]
    pairs = (pos[:, None] > neg[None]).double() + 0.5 * (pos[:, None] == neg[None]).double()
    assert roc_auc(s, y) == pytest.approx(float(pairs.mean()))


def test_edge_and_node_roc_on_a_small_graph():
    g = Graph(2, 1, attn_only=True)  # input, a0.0, a1.0, logits
    names = [e.name for e in g.edges]
    assert names == ["input->a0.0<q>", "input->a0.0<k>", "input->a0.0<v>",
                     "input->a1.0<q>", "a0.0->a1.0<q>", "input->a1.0<k>", "a0.0->a1.0<k>",
                     "input->a1.0<v>", "a0.0->a1.0<v>", "input->logits", "a0.0->logits",
                     "a1.0->logits"]
    gt = GroundTruth(("input->a1.0<v>", "a1.0->logits"))
    scores = torch.zeros(g.n_edges)
    scores[g.edge_index["input->a1.0<v>"]] = -3.0  # sign does not matter
    scores[g.edge_index["a1.0->logits"]] = 2.0
    scores[g.edge_index["a0.0->a1.0<k>"]] = 2.5  # a strong edge outside the ground truth
    r = evaluate_ground_truth(g, scores, gt)
    # positives 3 and 2 against 10 negatives (one 2.5, nine 0): 19 of 20 pairs ordered
    assert r["edge_roc_auc"] == pytest.approx(19 / 20)
    # nodes a0.0 (max incident 2.5, not in the ground truth) and a1.0 (3.0, in it)
    assert node_scores(names, scores) == {"a0.0": 2.5, "a1.0": 3.0}
    assert r["node_roc_auc"] == 1.0
    assert (r["gt_edges"], r["gt_nodes"]) == (2, 1)
    # the same from edge names in another order
    perm = torch.randperm(g.n_edges, generator=torch.Generator().manual_seed(1))
    r2 = evaluate_ground_truth([names[i] for i in perm], scores[perm], gt)
    assert r2["edge_roc_auc"] == r["edge_roc_auc"]


def test_unknown_ground_truth_edges_are_an_error():
    g = Graph(1, 1, attn_only=True)
    with pytest.raises(AcdcError, match="a5.0->logits"):
        evaluate_ground_truth(g, torch.zeros(g.n_edges), GroundTruth(("a5.0->logits",)))


def test_ground_truth_file_forms(tmp_path):
    edges = ["input->a0.0<v>", "a0.0->logits"]
    (tmp_path / "list.json").write_text(json.dumps(edges))
    (tmp_path / "obj.json").write_text(json.dumps({"edges": edges, "nodes": ["a0.0"]}))
    circuit = {"directed": True, "multigraph": True, "graph": {}, "nodes": [],
               "edges": [{"source": "input", "target": "a0.0", "key": "v", "name": edges[0]},
                         {"source": "a0.0", "target": "logits", "key": "resid",
                          "name": edges[1]}]}
    (tmp_path / "circuit.json").write_text(json.dumps(circuit))
    for name in ("list.json", "obj.json", "circuit.json"):
        assert load_ground_truth(tmp_path / name).edges == tuple(edges)
    (tmp_path / "bad.json").write_text(json.dumps({"nodes": []}))
    with pytest.raises(AcdcError, match="edges"):
        load_ground_truth(tmp_path / "bad.json")


def test_edge_scores_file_round_trip(tmp_path):
    """(read_edge_scores was dead code; the one scores reader is records.read_scores.)"""
    from acdc_engine.records import read_scores, write_scores

    g = Graph(1, 1)
    scores = torch.arange(g.n_edges, dtype=torch.float32) - 2
    p = write_scores(tmp_path / "edge_scores.tsv", g, scores)
    assert p.read_text().splitlines()[1] == f"{g.edges[0].name}\t-2"
    assert read_scores(p, g).tolist() == scores.tolist()
