"""Neuron-level circuits: heads and MLP neurons, through the patched forward's neuron hook point.

The neurons' attribution adds up to the MLP node's (GPT-2's MLP output is affine in its hidden
units), removing every neuron of an MLP with corrupted ablation is removing the MLP node, the
full budget is the full model, and what cannot run at this level is refused in one line.
"""

from __future__ import annotations

import pytest
import torch

from acdc_engine import discover
from acdc_engine.errors import AcdcError
from acdc_engine.evaluation.levels import node_keep, node_scores
from acdc_engine.evaluation.neuron_level import (hidden_sources, neuron_attribution,
                                                 unit_circuit, unit_curve)
from acdc_engine.patching import NeuronPatch, PatchPlan, ReadOut, run
from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.scoring import attribute
from acdc_engine.tasks import prepare
from acdc_engine.testing import random_pairs
from acdc_engine.testing.numerics import assert_close_to_f64, float64


def _problem(model, ablation="corrupted"):
    data = prepare("t", model.tokenizer, random_pairs(6, seed=5))
    return Problem.build(model, data, registry().metric("logit_diff"), ablation, batch_size=3)


def test_a_layers_neurons_add_up_to_its_mlp_node(gpt2):
    """sum_i (s_i - h_i) dm/dh_i = dm/d out . (f(s) - f(h)) for an affine f: the MLP node's EAP
    score, which is the sum of its outgoing edges' scores."""
    p = _problem(gpt2)
    got = neuron_attribution(p)
    want = node_scores(p.graph, attribute(p, "eap", progress=False))
    with float64(gpt2):
        p64 = _problem(gpt2)
        ref = node_scores(p64.graph, attribute(p64, "eap", progress=False))
    g = p.graph
    mlps = [g.writer_index(f"m{layer}") for layer in range(g.n_layers)]
    sums = torch.stack([got.neurons[layer].sum() for layer in range(g.n_layers)])
    assert float(want[mlps].abs().max()) > 0
    # bound: 4x the node score's float32 error against float64 + 16 eps max|score|
    assert_close_to_f64(sums, want[mlps], ref[mlps], factor=4, ulps=16)
    # and the heads' unit scores are their node scores (the same gradient)
    heads = [w for w, n in enumerate(g.writers) if n.kind.name == "ATTN"]
    assert_close_to_f64(got.heads[heads], want[heads], ref[heads], factor=4, ulps=16)


def test_removing_every_neuron_of_an_mlp_removes_the_mlp(gpt2):
    """With corrupted ablation an MLP whose every hidden unit is the corrupted run's writes the
    corrupted run's output: the node-level removal of that MLP."""
    p = _problem(gpt2)
    g, adapter = p.graph, gpt2.adapter
    sources = hidden_sources(p, list(range(g.n_layers)))
    layer = 0
    w = g.writer_index(f"m{layer}")
    kept = torch.ones(g.n_writers, dtype=torch.bool)
    kept[w] = False
    node_mask = g.mask_from_edges(node_keep(g, kept))
    for i, batch in enumerate(p.batches):
        d_mlp = sources[i][layer].shape[-1]
        with torch.no_grad():
            neuron = run(adapter, batch.clean, PatchPlan(neurons={
                layer: NeuronPatch(torch.zeros(d_mlp), sources[i][layer])}), ReadOut.of(batch))
            node = run(adapter, batch.clean, PatchPlan(mask=node_mask, ablated=p.ablated(i)),
                       ReadOut.of(batch))
            with float64(gpt2):
                ref = run(adapter, batch.clean, PatchPlan(mask=node_mask.double(),
                                                          ablated=p.ablated(i).double()),
                          ReadOut.of(batch))
        # bound: 4x the node path's float32 error against float64 + 16 eps max|logit|
        assert_close_to_f64(neuron, node, ref, factor=4, ulps=16)


def test_the_curve_counts_heads_and_neurons(gpt2):
    p = _problem(gpt2)
    ns = neuron_attribution(p)
    total = len(ns.units(p.graph))
    assert total == p.graph.n_heads * p.graph.n_layers + sum(len(s) for s in ns.neurons.values())
    curve, circuits, _ = unit_curve(p, ns, (5, 50, 100))
    assert curve.unit == "units" and curve.n_edges_total == total
    assert curve.n_edges[-1] == total and curve.normalized[-1] == pytest.approx(1.0)
    kept, keeps = unit_circuit(p.graph, ns, 3)
    n_heads = int(sum(kept[w] for w, n in enumerate(p.graph.writers) if n.kind.name == "ATTN"))
    assert n_heads + int(sum(k.sum() for k in keeps.values())) == 3


def test_discover_at_the_neuron_level(tmp_path):
    r = discover(model="tiny-ioi", task="ioi", method="eap", level="neuron", n_nodes=40,
                 track=False, out=tmp_path / "run", render=False, progress=False, n_examples=16)
    assert r.curve.unit == "units" and r.circuit.attrs["level"] == "neuron"
    kept = sum(r.info["neurons_kept"].values()) + r.info["heads_kept"]
    assert kept == 40 and 0 < r.faithfulness.normalized <= 1.5


def test_a_model_without_mlp_neurons_is_refused_and_tracr_runs(tmp_path):
    with pytest.raises(AcdcError, match="attention-only"):
        discover(model="toy-induction", task="induction", method="eap", level="neuron",
                 n_nodes=2, track=False, progress=False, render=False)
    # a tracr program's MLPs have the hook point: its neuron level runs (the ground truth's
    # MLP carries the task, so the full budget is faithful)
    r = discover(model="tracr-reverse", task="tracr-reverse", method="eap", level="neuron",
                 track=False, progress=False, render=False, out=tmp_path / "t")
    assert r.curve.normalized[-1] == pytest.approx(1.0)
