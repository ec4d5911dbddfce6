"""Activation patching, node ablation and path patching through the patched forward."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.errors import AcdcError
from acdc_engine.evidence.causal import activation_patching, node_ablation, path_patching
from acdc_engine.interventions import Intervention, InterventionStack, evaluate_interventions


def test_patching_the_clean_input_restores_exactly_one(gpt2_problem):
    p = gpt2_problem
    ap = activation_patching(p)
    g = p.graph
    P = p.batches[0].clean.shape[1]
    assert ap.restored.shape == (g.n_writers, P)
    i = ap.nodes.index("input")
    assert float(ap.restored_all[i]) == pytest.approx(1.0, abs=1e-5)  # the full clean run
    # the clean and corrupted numbers are the model's own
    clean = torch.cat([p.metric(p.model.reference_logits(b.clean)[:, -1], b)
                       for b in p.batches]).mean()
    assert ap.clean == pytest.approx(float(clean), abs=1e-4)
    # the metric reads the last position, so the last layer's heads act only there
    last = g.n_layers - 1
    for h in range(g.n_heads):
        k = ap.nodes.index(f"a{last}.{h}")
        assert torch.allclose(ap.restored[k, :-1], torch.zeros(P - 1), atol=1e-5)
        assert float(ap.restored[k, -1]) == pytest.approx(float(ap.restored_all[k]), abs=1e-5)


def test_patching_a_node_at_all_positions_is_the_freeze_intervention(gpt2_problem):
    """Patch the corrupted run with m0's clean output == run clean, patch every writer from
    corrupted except m0, frozen to clean; compare through evaluate_interventions on a
    problem whose 'clean' prompts are the corrupted ones."""
    from dataclasses import replace

    p = gpt2_problem
    ap = activation_patching(p, nodes=["m0"])
    swapped = replace(p, batches=[replace(b, clean=b.corrupted, corrupted=b.clean)
                                  for b in p.batches])
    swapped._ablated = {}
    stack = InterventionStack(p.graph)
    stack.push(Intervention("patch", "m0", "corrupted"))  # source: the original clean run
    got = float(evaluate_interventions(swapped, stack).mean())
    want = ap.corrupted + float(ap.restored_all[0]) * (ap.clean - ap.corrupted)
    assert got == pytest.approx(want, abs=1e-4)


def test_node_ablation_matches_single_interventions(gpt2_problem):
    p = gpt2_problem
    ab = node_ablation(p, nodes=["a0.1", "m1"], source="zero", n_boot=200)
    stack = InterventionStack(p.graph)
    full = evaluate_interventions(p, stack)
    stack.push(Intervention.parse("ablate m1 zero"))
    want = float((evaluate_interventions(p, stack) - full).mean())
    assert ab.effects[1].point == pytest.approx(want, abs=1e-5)
    assert all(e.contains(e.point) for e in ab.effects)
    everything = InterventionStack(p.graph)
    for n in p.graph.writers:
        everything.push(Intervention("ablate", n.name, "zero"))
    gap = float(full.mean() - evaluate_interventions(p, everything).mean())
    assert ab.fraction[1] == pytest.approx(-want / gap, rel=1e-5)


def test_path_patching_into_logits_is_the_edge_patch(gpt2_problem):
    p = gpt2_problem
    pp = path_patching(p, "m1", "logits", n_boot=200)
    assert pp.edges == ["m1->logits"]
    # the last MLP writes only to the logits: its path effect is its node effect
    assert pp.effect.point == pytest.approx(pp.node_effect.point, abs=1e-5)
    q = path_patching(p, "a0.0", "a1.1", kinds="qkv", n_boot=200)
    assert q.edges == ["a0.0->a1.1<q>", "a0.0->a1.1<k>", "a0.0->a1.1<v>"]
    assert q.effect.point != pytest.approx(q.node_effect.point, abs=1e-6)
    with pytest.raises(AcdcError):
        path_patching(p, "a1.0", "a0.1")
