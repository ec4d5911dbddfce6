"""discover(): the circuit, its faithfulness and its files."""

from __future__ import annotations

import json

import networkx as nx
import pytest
import torch

from acdc_engine import discover
from acdc_engine.circuit import Circuit, prune_dead, select
from acdc_engine.errors import AcdcError
from acdc_engine.graph import Graph
from acdc_engine.tasks import Task
from acdc_engine.testing import random_pairs


@pytest.fixture(scope="module")
def task(gpt2_path):
    return Task("rand", lambda n, s: random_pairs(n or 12, seed=s), model=str(gpt2_path))


def test_circuit_json_round_trip(task, tmp_path):
    result = discover(task=task, method="eap", n_edges=12, out=tmp_path, progress=False,
                      **({"track": False} if "track" in discover.__code__.co_varnames else {}))
    data = json.loads((tmp_path / "circuit.json").read_text())
    G = nx.node_link_graph(data, edges="edges")
    assert isinstance(G, nx.DiGraph)
    for key in ("model", "task", "method", "metric", "ablation", "faithfulness", "n_edges",
                "n_edges_total"):
        assert key in G.graph, key
    assert G.graph["n_edges_total"] == result.graph.n_edges == 46
    assert 0 < G.number_of_edges() <= 12 == result.params["n_edges_requested"]
    for u, v, k, d in G.edges(keys=True, data=True):
        assert d["kind"] == k in {"q", "k", "v", "resid"}
        assert isinstance(d["score"], float)
        assert d["name"].startswith(f"{u}->{v}")
    # the saved circuit reproduces the reported faithfulness when evaluated again
    loaded = Circuit.load(tmp_path / "circuit.json").nx
    assert set(loaded.edges(keys=True)) == set(G.edges(keys=True))
    assert (tmp_path / "edge_scores.tsv").read_text().count("\n") == 47


def test_full_and_empty_circuits_score_one_and_zero(task):
    full = discover(task=task, method="eap", n_edges=46, progress=False)
    assert full.faithfulness.normalized == pytest.approx(1.0, abs=1e-5)
    empty = discover(task=task, method="eap", n_edges=0, progress=False)
    assert empty.faithfulness.normalized == pytest.approx(0.0, abs=1e-5)
    assert empty.circuit.number_of_edges() == 0


def test_default_picks_the_smallest_faithful_budget(task):
    result = discover(task=task, method="eap-ig", progress=False, target=0.5)
    assert result.faithfulness.normalized >= 0.5
    smaller = discover(task=task, method="eap-ig", progress=False, target=0.5,
                       n_edges=max(0, result.circuit.number_of_edges() - 10))
    assert smaller.circuit.number_of_edges() < result.circuit.number_of_edges()


def test_selection_threshold_and_pruning():
    g = Graph(2, 2)
    scores = torch.zeros(g.n_edges)
    for name, s in [("input->a0.0<v>", 3.0), ("a0.0->logits", -2.0), ("a1.1->m1", 5.0)]:
        scores[g.edge_index[name]] = s
    keep = select(g, scores, threshold=1.0)
    assert int(keep.sum()) == 3
    kept = {g.edges[i].name for i in prune_dead(g, keep).nonzero()[:, 0]}
    assert kept == {"input->a0.0<v>", "a0.0->logits"}  # a1.1 has no input: dead end
    with pytest.raises(AcdcError):
        select(g, scores, n_edges=3, threshold=1.0)


def test_circuit_mask_matches_kept_edges(task):
    result = discover(task=task, method="eap", n_edges=10, progress=False)
    mask = result.circuit.mask()
    assert int(mask.sum()) == result.circuit.number_of_edges()


def test_bfloat16_runs_and_agrees_with_float32(task):
    f32 = discover(task=task, method="eap", n_edges=20, progress=False)
    bf16 = discover(task=task, method="eap", n_edges=20, progress=False, dtype="bfloat16")
    assert bf16.params["dtype"] == "bfloat16"
    rho = torch.corrcoef(torch.stack([f32.scores, bf16.scores]))[0, 1]
    assert rho > 0.95


def test_cuda_requested_without_cuda_is_a_clear_error(task):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(AcdcError, match="no CUDA device"):
        discover(task=task, method="eap", n_edges=5, device="cuda", progress=False)
