"""Interventions (ablate, freeze, patch) through the patched forward."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.errors import AcdcError
from acdc_engine.interventions import Intervention, InterventionStack, evaluate_interventions
from acdc_engine.patching import LAST, PatchPlan, run
from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.tasks import prepare
from acdc_engine.testing import random_pairs
from acdc_engine.testing.numerics import assert_close_to_f64, float64


@pytest.fixture(scope="module")
def problem(gpt2):
    data = prepare("t", gpt2.tokenizer, random_pairs(6, seed=5))
    return Problem.build(gpt2, data, registry().metric("logit_diff"), "corrupted", batch_size=3)


def _reference(problem, ids_attr):
    out = []
    for b in problem.batches:
        logits = problem.model.reference_logits(getattr(b, ids_attr))[:, -1]
        out.append(problem.metric(logits, b))
    return torch.cat(out)


def _close(got, want, problem, ids_attr):
    """``got`` (the patched forward) and ``want`` (the model's own forward, float32) against
    the model's own forward in float64."""
    with float64(problem.model):
        ref = torch.cat([problem.metric(problem.model.reference_logits(getattr(b, ids_attr))
                                        [:, -1].double(), b) for b in problem.batches])
    # bound: 4x the model's own float32 error against float64 + 16 eps max|metric|
    assert_close_to_f64(got, want, ref, factor=4, ulps=16)


def test_no_intervention_is_the_model(problem):
    got = evaluate_interventions(problem, InterventionStack(problem.graph))
    _close(got, _reference(problem, "clean"), problem, "clean")


def test_patching_every_writer_from_corrupted_is_the_corrupted_run(problem):
    stack = InterventionStack(problem.graph)
    for node in problem.graph.writers:
        stack.push(Intervention("patch", node.name, "corrupted"))
    got = evaluate_interventions(problem, stack)
    _close(got, _reference(problem, "corrupted"), problem, "corrupted")
    stack.clear()
    _close(evaluate_interventions(problem, stack), _reference(problem, "clean"), problem,
           "clean")


def test_freeze_pins_a_node_to_its_clean_output(problem):
    """Patch the input from corrupted but freeze every head and MLP: nothing downstream of
    the frozen nodes changes except what reads the input directly (the logits' input edge)."""
    g = problem.graph
    stack = InterventionStack(g)
    stack.push(Intervention.parse("patch input from corrupted"))
    for node in g.writers[1:]:
        stack.push(Intervention.parse(f"freeze {node.name}"))
    got = evaluate_interventions(problem, stack)
    # the same by hand: only the edge input->logits reads the corrupted embeddings
    mask = torch.ones(g.n_writers, g.n_readers)
    mask[0, g.logits_slot] = 0
    want, ref, scale = [], [], 0.0
    for i, b in enumerate(problem.batches):
        logits = run(problem.model.adapter, b.clean,
                     PatchPlan(mask=mask, ablated=problem.ablated(i)), LAST)[:, -1]
        want.append(problem.metric(logits, b))
        scale = max(scale, float(logits.detach().abs().max()))
        with float64(problem.model):  # the same masked run in float64, inputs cast up exactly
            plan = PatchPlan(mask=mask.double(), ablated=problem.ablated(i).double())
            logits = run(problem.model.adapter, b.clean, plan, LAST)[:, -1]
            ref.append(problem.metric(logits, b))
    # bound: 4x the masked run's float32 error against float64 + 16 eps max|logit| (the metric
    # is a difference of logits)
    assert_close_to_f64(got, torch.cat(want), torch.cat(ref), scale, factor=4, ulps=16,
                        what="freeze")


def test_edge_and_undo(problem):
    stack = InterventionStack(problem.graph)
    base = evaluate_interventions(problem, stack)
    stack.push(Intervention.parse("ablate a1.0->logits zero"))
    changed = evaluate_interventions(problem, stack)
    assert not torch.allclose(changed, base)
    assert str(stack.items.pop()) == "ablate a1.0->logits zero"  # as the viewer's undo
    # undone: the same stack as before, so the same computation, bit for bit
    assert torch.equal(evaluate_interventions(problem, stack), base)


@pytest.mark.parametrize("text, match", [
    ("ablate a9.0", "no node"), ("ablate", "cannot read"), ("poke a0.0", "unknown intervention"),
    ("ablate a0.0 sideways", "unknown source"), ("ablate logits", "write nothing"),
    ("ablate a0.0->a0.1<q>", "no edge"),
])
def test_bad_interventions_are_clear_errors(problem, text, match):
    stack = InterventionStack(problem.graph)
    with pytest.raises((AcdcError, KeyError), match=match):
        stack.push(Intervention.parse(text))
    assert stack.items == []
