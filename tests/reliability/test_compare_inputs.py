"""``acdc compare`` on files that are not circuits, and on circuits that should not be compared
without a warning (different tasks, different budgets, different graphs)."""

from __future__ import annotations

import json

import pytest

from acdc_engine.circuit import Circuit
from acdc_engine.errors import AcdcError
from acdc_engine.evaluation.compare import compare_circuits
from acdc_engine.graph import Graph

EDGES = ["input->a0.0<q>", "a0.0->logits", "input->logits"]


def test_json_that_is_not_a_circuit(tmp_path):
    bad = tmp_path / "scores.json"
    bad.write_text(json.dumps({"faithfulness": 0.9}))
    good = Circuit.from_edges(Graph(1, 1), EDGES)
    with pytest.raises(AcdcError, match=rf"{bad} is not a circuit file"):
        compare_circuits(bad, good)


def test_circuits_of_different_tasks_and_budgets_are_compared_with_warnings():
    g = Graph(1, 1)
    a = Circuit.from_edges(g, EDGES, task="ioi", n_edges_requested=3)
    b = Circuit.from_edges(g, EDGES[:2], task="induction", n_edges_requested=2)
    warnings = compare_circuits(a, b).warnings
    assert "the circuits differ in task ('ioi' vs 'induction')" in warnings
    assert "the circuits were cut at different budgets (3 vs 2 edges)" in warnings


def test_circuits_of_different_graphs_are_refused():
    a = Circuit.from_edges(Graph(1, 1), EDGES)
    b = Circuit.from_edges(Graph(2, 1), EDGES)
    with pytest.raises(AcdcError, match="different graphs"):
        compare_circuits(a, b)
