"""Faithfulness curves (MIB): the CPR/CMD arithmetic on a hand-computed example, and the
one-pass evaluation of every budget against separate evaluations."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.evaluation.curves import (
    BUDGETS,
    Curve,
    budget_circuits,
    cmd,
    cpr,
    faithfulness_curve,
)
from acdc_engine.patching import Ablation
from acdc_engine.problem import Problem


def test_cpr_cmd_hand_computed():
    # x: fraction of edges, f: normalized faithfulness
    x, f = [0.1, 0.5, 1.0], [0.2, 0.8, 1.0]
    # CPR = 0.4 * (0.2 + 0.8) / 2 + 0.5 * (0.8 + 1.0) / 2 = 0.2 + 0.45
    assert cpr(x, f) == pytest.approx(0.65)
    # CMD: |1 - f| = 0.8, 0.2, 0 -> 0.4 * 0.5 + 0.5 * 0.1 = 0.2 + 0.05
    assert cmd(x, f) == pytest.approx(0.25)
    # order of the points does not matter; overshooting 1 counts against CMD like undershooting
    assert cpr(x[::-1], f[::-1]) == pytest.approx(0.65)
    assert cmd([0.0, 0.5, 1.0], [1.5, 1.0, 1.0]) == pytest.approx(0.5 * 0.5 / 2)
    assert cpr([0.0, 1.0], [1.0, 1.0]) == 1.0 and cmd([0.0, 1.0], [1.0, 1.0]) == 0.0


def test_curve_normalizes_raw_metric():
    # raw metric 0.4, 1.6, 2.0 with full model 2.0 and empty circuit 0.0 -> f = 0.2, 0.8, 1.0
    c = Curve(budgets=(10, 50, 100), n_edges=(10, 50, 100), n_edges_total=100,
              values=(0.4, 1.6, 2.0), full=2.0, empty=0.0)
    assert c.fractions == [0.1, 0.5, 1.0]
    assert c.normalized == pytest.approx([0.2, 0.8, 1.0])
    assert (c.cpr, c.cmd) == (pytest.approx(0.65), pytest.approx(0.25))
    assert c.smallest_reaching(0.8) == 1 and c.smallest_reaching(1.01) is None
    assert Curve.from_dict(c.as_dict()) == c
    assert "CPR 0.650" in c.table()


@pytest.fixture(scope="module")
def setup(gpt2):
    from acdc_engine.testing import random_pairs

    from acdc_engine.plugins import registry
    from acdc_engine.tasks import prepare

    metric = registry().metric("logit_diff")
    data = prepare("toy", gpt2.tokenizer, random_pairs(10, seed=3))
    return Problem.build(gpt2, data, metric, Ablation("corrupted"), batch_size=4)


def test_curve_is_one_pass_and_matches_separate_evaluations(setup, monkeypatch):
    problem = setup
    model, batches = problem.model, problem.batches
    g = model.graph
    scores = torch.randn(g.n_edges, generator=torch.Generator().manual_seed(0))
    calls = []
    original = Ablation.activations
    monkeypatch.setattr(Ablation, "activations",
                        lambda self, a, b: calls.append(1) or original(self, a, b))
    curve, keeps, _ = faithfulness_curve(problem, scores, BUDGETS, progress=False)
    assert len(calls) == len(batches)  # ablated activations once per batch, for all budgets
    assert curve.budgets == tuple(float(b) for b in BUDGETS)
    assert curve.n_edges[-1] == g.n_edges and curve.normalized[-1] == pytest.approx(1.0)
    assert list(curve.n_edges) == sorted(curve.n_edges)
    for keep, k, value in zip(budget_circuits(g, scores), keeps, curve.values):
        assert torch.equal(keep, k)
        alone = problem.faithfulness(g.mask_from_edges(keep))
        assert value == pytest.approx(alone.circuit, abs=1e-5)
        assert curve.full == pytest.approx(alone.full, abs=1e-5)
        assert curve.empty == pytest.approx(alone.empty, abs=1e-5)
