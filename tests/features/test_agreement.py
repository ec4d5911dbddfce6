"""The engine's attribution graph equals circuit-tracer 0.5.0's (slow; needs /work/ct-venv).

A tiny random GPT-2 (saved with ``save_pretrained``) and random sparse transcoders written in
circuit-tracer's file format; benchmarks/trace_vs_circuit_tracer.py runs circuit-tracer in its
own virtual environment and the engine in another process on the same token ids, and the
graphs must agree: the same active features, feature nodes, logit targets and pruned nodes,
and the adjacency equal within the float32 rounding measured against the engine's float64
graph (the benchmark's docstring derives the tolerance).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from acdc_engine.features.circuit_tracer_format import save_circuit_tracer
from acdc_engine.testing.builders import save_gpt2

ROOT = Path(__file__).resolve().parents[2]
CT_PYTHON = Path("/work/ct-venv/bin/python")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    not CT_PYTHON.exists(), reason="circuit-tracer 0.5.0 is not installed in /work/ct-venv "
    "(python benchmarks/trace_vs_circuit_tracer.py --setup creates it)")]


def _bench():
    spec = importlib.util.spec_from_file_location(
        "trace_vs_circuit_tracer", ROOT / "benchmarks" / "trace_vs_circuit_tracer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    assert r["adjacency_equal"] and r["same_pruned_nodes"]
    assert r["adjacency_max_abs"] > 100 * r["tolerance"]  # the graph is not all zeros
    assert r["ct_vs_float64"] <= r["tolerance"]
    assert eng["adjacency"].shape == ct["adjacency"].shape
    assert eng["input_tokens"].tolist()[0] == 1  # the BOS was prepended (text) or kept (ids)
