"""The graph vocabulary: node and edge naming, counts, dense/per-edge round trips."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from acdc_engine.graph import EdgeKind, Graph


def test_gpt2_small_has_32491_edges():
    g = Graph(12, 12)
    assert g.n_edges == 32491
    assert len(g.nodes) == 1 + 144 + 12 + 1


def test_edge_names_and_kinds():
    g = Graph(2, 2)
    names = {e.name for e in g.edges}
    assert {"input->a0.0<q>", "a0.1->a1.0<k>", "m0->a1.1<v>", "a1.1->m1", "m1->logits",
            "a0.0->m0"} <= names
    assert "a1.0->a0.0<q>" not in names and "a1.0->a1.1<q>" not in names
    e = g.edge("a0.1->a1.0<k>")
    assert (e.src.name, e.dst.name, e.kind) == ("a0.1", "a1.0", EdgeKind.K)
    with pytest.raises(KeyError):
        g.edge("a1.0->m0")


def test_parallel_blocks_have_no_attn_to_mlp_edges_in_a_layer():
    g = Graph(2, 2, parallel=True)
    assert "a0.0->m0" not in {e.name for e in g.edges}
    assert g.n_edges == Graph(2, 2).n_edges - 2 * 2


def test_dense_round_trip_and_validity():
    g = Graph(3, 2)
    v = torch.randn(g.n_edges)
    dense = g.to_dense(v)
    assert torch.equal(g.from_dense(dense), v)
    assert int(g.valid.sum()) == g.n_edges
    assert (dense[~g.valid] == 0).all()


@pytest.mark.slow
def test_cli_counts_gpt2_small_from_a_saved_random_config(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config()).save_pretrained(tmp_path)  # 124M random weights, no download
    out = subprocess.run([sys.executable, "-m", "acdc_engine.cli", "graph", "--model",
                          str(tmp_path)], capture_output=True, text=True, check=True).stdout
    assert "32491 edges" in out and "158 nodes" in out


def test_cli_counts_a_gpt2_small_shaped_config(tmp_path):
    """12 layers x 12 heads with a narrow width: the edge count depends on the shape only."""
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_embd=48, vocab_size=64, bos_token_id=0, eos_token_id=0)) \
        .save_pretrained(tmp_path)
    out = subprocess.run([sys.executable, "-m", "acdc_engine.cli", "graph", "--model",
                          str(tmp_path)], capture_output=True, text=True, check=True).stdout
    assert "32491 edges" in out


def test_names_has_the_one_parser_and_graph_re_exports_it():
    from acdc_engine import graph, names

    assert all(getattr(graph, n) is getattr(names, n) for n in names.__all__)
    g = Graph(2, 2)
    for node in g.nodes:  # node_name is parse_node's inverse on every node of a graph
        kind, layer, head = names.parse_node(node.name)
        assert names.node_name(kind, layer, head) == node.name and kind is node.kind
    assert names.check_positions(["IO", 0, "x.y-1"]) == ("IO", "0", "x.y-1")
    for bad in (["a b"], ["IO", "IO"], ["@END"]):
        with pytest.raises(ValueError, match="position groups"):
            Graph(2, 2, positions=bad)
