"""The Circuit type and the name vocabulary: one way from scores to circuits and back."""

from __future__ import annotations

import json

import networkx as nx
import pytest
import torch

from acdc_engine.circuit import Circuit
from acdc_engine.errors import AcdcError
from acdc_engine.graph import EdgeKind, Graph, NodeKind, edge_name, parse_edge, parse_node


def test_names_parse_and_format_round_trip():
    g = Graph(3, 2)
    for e in g.edges:
        src, dst, kind = parse_edge(e.name)
        assert (src, dst, kind) == (e.src.name, e.dst.name, e.kind)
        assert edge_name(src, dst, kind) == e.name
    assert parse_node("a2.1") == (NodeKind.ATTN, 2, 1)
    assert parse_node("m0") == (NodeKind.MLP, 0, None)
    assert parse_node("logits")[0] is NodeKind.LOGITS
    assert edge_name("a0.0", "m1", "resid") == "a0.0->m1"
    assert edge_name("a0.0", "a1.1", EdgeKind.K) == "a0.0->a1.1<k>"
    for bad in ("a0->m1", "x->logits", "a0.0->a1.1<z>", "m1"):
        with pytest.raises(ValueError):
            parse_edge(bad)


def test_graph_slots_match_reader_axis():
    g = Graph(2, 3)
    for i, node in enumerate(g.nodes):
        for slot in g.node_slots(i):
            assert g.slot_node[slot] == i
            assert g.readers()[slot][0] == node
    assert [g.edge_index[g.edges[s].name] for s in g.slot_starts] == g.slot_starts
    assert Graph.from_shape(Graph(4, 5, parallel=True).shape()) == Graph(4, 5, parallel=True)


def test_top_n_circuit_json_and_networkx_round_trip(tmp_path):
    g = Graph(2, 2)
    scores = torch.randn(g.n_edges, generator=torch.Generator().manual_seed(1))
    c = Circuit.top(g, scores, 12, task="t", method="eap")
    assert 0 < c.number_of_edges() <= 12
    assert int(c.mask().sum()) == c.number_of_edges()
    assert set(c.edge_names) == {d["name"] for *_, d in c.nx.edges(keys=True, data=True)}
    path = c.save(tmp_path / "circuit.json")
    back = Circuit.load(path)
    assert back.graph == g and torch.equal(back.keep, c.keep)
    assert back.attrs["task"] == "t" and back.score(c.edge_names[0]) == pytest.approx(
        float(scores[g.edge_index[c.edge_names[0]]]), abs=1e-6)
    G = nx.node_link_graph(json.loads(path.read_text()), edges="edges")
    assert G.graph["n_layers"] == 2 and G.graph["n_edges_total"] == g.n_edges


def test_old_circuit_files_without_a_shape_are_read_onto_the_inferred_graph(tmp_path):
    g = Graph(3, 4)
    c = Circuit.from_edges(g, ["input->a0.1<q>", "a0.1->logits"])
    data = c.to_json()
    for k in ("n_layers", "n_heads", "parallel", "attn_only"):
        del data["graph"][k]
    (tmp_path / "old.json").write_text(json.dumps(data))
    assert Circuit.load(tmp_path / "old.json").graph == g


def test_not_a_circuit_is_a_clear_error(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({"edges": ["a->b"]}))
    with pytest.raises(AcdcError, match="not a circuit file"):
        Circuit.load(tmp_path / "x.json")
    with pytest.raises(AcdcError, match="does not have"):
        Circuit.from_edges(Graph(1, 1), ["a5.0->logits"])
