"""The engine's attribution graph equals circuit-tracer 0.5.0's (slow; needs /work/ct-venv).

A tiny random GPT-2 (saved with ``save_pretrained``) and random sparse transcoders written in
circuit-tracer's file format; benchmarks/trace_vs_circuit_tracer.py runs circuit-tracer in its
own virtual environment and the engine in another process on the same token ids, and the
graphs must agree: the same active features, feature nodes, logit targets, pruned nodes and
edges, the adjacency equal within the float32 rounding measured against the engine's float64
graph (the benchmark's docstring derives the tolerance), and the pruned graph's JSON (the
engine's ``to_circuit_tracer_json`` against circuit-tracer's ``create_graph_files``) the same.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from acdc_engine.features.circuit_tracer_format import save_circuit_tracer
from acdc_engine.testing.builders import save_gpt2

ROOT = Path(__file__).resolve().parents[2]
CT_PYTHON = Path("/work/ct-venv/bin/python")

needs_ct = [pytest.mark.slow, pytest.mark.skipif(
    not CT_PYTHON.exists(), reason="circuit-tracer 0.5.0 is not installed in /work/ct-venv "
    "(python benchmarks/trace_vs_circuit_tracer.py --setup creates it)")]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "trace_vs_circuit_tracer", ROOT / "benchmarks" / "trace_vs_circuit_tracer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@needs_ct[0]
@needs_ct[1]
@pytest.mark.parametrize("kind,max_nodes,text", [("transcoders", None, False), ("clt", 12, False),
                                                  ("transcoders", None, True)],
                         ids=["transcoders-ids", "clt-capped-ids", "transcoders-text"])
def test_engine_graph_equals_circuit_tracers(tmp_path, kind, max_nodes, text):
    bench = _bench()
    model = save_gpt2(tmp_path / "model", n_layer=2, n_head=2, n_embd=16, seed=3)
    tc = bench.random_transcoders(2, 16, 32, 3, "model", seed=1, kind=kind)
    folder = save_circuit_tracer(tc, tmp_path / "tc")
    ids = [1, 3, 9, 4, 12, 5, 3, 20]  # <pad> (a special token) first, then words
    if text:  # each side tokenizes it and prepends its BOS choice (<pad>, id 1)
        ids = "w1 w7 w2 w10 w3 w1 w18"
    r, eng, ct = bench.run_comparison(model, folder, ids, tmp_path, CT_PYTHON,
                                      max_feature_nodes=max_nodes)
    assert bench.explain(r) == [], r
    assert r["same_active_features"] and r["active_features"][0] > 0
    assert r["same_selected_features"] and r["same_logit_targets"]
    assert r["adjacency_equal"] and r["same_pruned_nodes"] and r["same_pruned_edges"]
    assert r["json_equal"] and r["json_links"][0] > 0  # the frontend's JSON files agree too
    assert r["adjacency_max_abs"] > 100 * r["tolerance"]  # the graph is not all zeros
    assert r["ct_vs_float64"] <= r["tolerance"]
    assert eng["adjacency"].shape == ct["adjacency"].shape
    assert eng["input_tokens"].tolist()[0] == 1  # the BOS was prepended (text) or kept (ids)


def _graph(adjacency, features, node_mask):
    import torch

    n = adjacency.shape[0]
    return {"input_tokens": torch.tensor([0, 5, 6]), "active_features": features,
            "activation_values": torch.ones(len(features)),
            "selected_features": torch.arange(len(features)),
            "logit_token_ids": torch.tensor([7]), "logit_probabilities": torch.tensor([1.0]),
            "adjacency": adjacency, "node_mask": node_mask,
            "edge_mask": torch.ones(n, n, dtype=torch.bool), "replacement_score": 0.5,
            "completeness_score": 0.5,
            "float64": {"adjacency": adjacency.double()}}


def test_the_comparison_catches_a_wrong_graph():
    """The benchmark's comparison is not vacuous: a rounding-sized change passes, a changed
    entry, another feature set or another pruned node set is named in its output."""
    import torch

    bench = _bench()
    g = torch.Generator().manual_seed(0)
    A = torch.randn(9, 9, generator=g)
    feats = torch.tensor([[0, 1, 3], [1, 2, 4]])
    mask = torch.ones(9, dtype=torch.bool)
    eng = _graph(A, feats, mask)
    eng["float64"]["adjacency"] = A.double() + 1e-7  # the engine's float32 rounding error
    r = bench.compare(eng, _graph(A * (1 + 2e-7), feats, mask))
    assert r["adjacency_equal"] and bench.explain(r) == []
    wrong = A.clone()
    wrong[3, 1] += 1e-3  # one entry off by far more than rounding
    r = bench.compare(eng, _graph(wrong, feats, mask))
    assert not r["adjacency_equal"] and r["first_entries_over_tolerance"] == [[3, 1]]
    assert any("adjacency differs" in line for line in bench.explain(r))
    r = bench.compare(eng, _graph(A, torch.tensor([[0, 1, 3], [1, 2, 5]]), mask))
    assert any("active features differ" in line for line in bench.explain(r))
    other = mask.clone()
    other[0] = False
    r = bench.compare(eng, _graph(A, feats, other))
    assert any("pruned node sets differ in 1" in line for line in bench.explain(r))
