"""EAP-GP (acdc_engine.scoring.gradpath): GradPath's steps against the distance they descend
(finite differences in float64), the scores against separate patched runs at the path's
points (float32 tolerance from the same reference in float64), the small-step limit (EAP),
the method, and the refusals."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.errors import AcdcError
from acdc_engine.patching import PatchPlan, ReadOut, run, run_with_writers
from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.scoring import attribute
from acdc_engine.scoring.gradpath import eap_gp, grad_path
from acdc_engine.tasks import Task, prepare
from acdc_engine.testing import random_pairs
from acdc_engine.testing.numerics import assert_close_to_f64, float64


def _problem(lm, ablation="corrupted", metric="logit_diff", n=6, positions=None):
    data = prepare("t", lm.tokenizer, random_pairs(n, seed=3))
    return Problem.build(lm, data, registry().metric(metric), ablation, batch_size=4,
                         positions=positions)


def _dist(p, i, emb):
    """``||G(emb) - G(ablated)||^2`` of batch ``i``, per example [b] (its own runs)."""
    batch = p.batches[i]
    zero = p.graph.full_mask(0.0, dtype=p.model.dtype)
    target = run(p.model.adapter, batch.clean, PatchPlan(mask=zero, ablated=p.ablated(i)),
                 ReadOut.of(batch))
    logits = run(p.model.adapter, batch.clean, PatchPlan(embed=emb), ReadOut.of(batch))
    return (logits - target).pow(2).sum((1, 2))


@pytest.mark.parametrize("ablation", ["corrupted", "zero"])
def test_each_step_is_a_unit_steepest_descent_step(gpt2, ablation):
    """In float64: each step has length ``step`` per example, and it is the steepest descent
    direction of the distance: the distance's directional derivative along it is minus the
    gradient's norm (finite differences), along a random direction orthogonal to it zero."""
    with float64(gpt2):
        p = _problem(gpt2, ablation)
        with torch.no_grad():
            x0 = p.model.adapter.embed(p.batches[0].clean)
            pts = grad_path(p, 0, steps=2, step=0.5)
            prev = [x0, pts[0]]
            for a, b_ in zip(prev, pts):
                d = b_ - a
                assert torch.allclose(d.flatten(1).norm(dim=1), torch.full((len(d),), 0.5,
                                      dtype=d.dtype), atol=1e-12)
                u = d / 0.5  # unit per example
                eps = 1e-5
                slope = (_dist(p, 0, a + eps * u) - _dist(p, 0, a - eps * u)) / (2 * eps)
                x = a.clone().requires_grad_(True)
                with torch.enable_grad():
                    _dist(p, 0, x).sum().backward()
                gnorm = x.grad.flatten(1).norm(dim=1)
                assert torch.allclose(slope, -gnorm, rtol=1e-6, atol=1e-9), (slope, gnorm)
                r = torch.randn_like(u)
                r = r - (r * u).sum((1, 2), keepdim=True) * u
                r = r / r.flatten(1).norm(dim=1).view(-1, 1, 1)
                side = (_dist(p, 0, a + eps * r) - _dist(p, 0, a - eps * r)) / (2 * eps)
                assert side.abs().max() <= 1e-6 * gnorm.max()


def _by_runs(lm, steps, step, ablation):
    """``-(1/steps) sum over the path's points of mask.grad``, one separate run per point
    (its own mask.grad: no sink), averaged over examples."""
    p = _problem(lm, ablation)
    total, n = 0.0, 0
    with lm.frozen():
        for i, batch in enumerate(p.batches):
            abl = p.ablated(i)
            _, outs = run_with_writers(p.model.adapter, batch.clean, PatchPlan(),
                                       ReadOut.of(batch))
            delta = outs if abl is None else outs - abl
            for gamma in grad_path(p, i, steps, step):
                mask = p.graph.full_mask(1.0, dtype=p.model.dtype, requires_grad=True)
                logits = run(p.model.adapter, batch.clean,
                             PatchPlan(mask=mask, delta=delta, embed=gamma), ReadOut.of(batch))
                p.metric.score(logits, batch).sum().backward()
                total = total + mask.grad
            n += len(batch)
    return p.graph.from_dense(-(total / (steps * n))).float()


@pytest.mark.parametrize("ablation", ["corrupted", "mean"])
def test_scores_are_the_mean_gradient_over_the_path(gpt2, ablation):
    fast = eap_gp(_problem(gpt2, ablation), steps=3, step=1.0, progress=False)
    plain = _by_runs(gpt2, 3, 1.0, ablation)
    with float64(gpt2):
        ref = _by_runs(gpt2, 3, 1.0, ablation)
    assert_close_to_f64(fast, plain, ref, what=f"eap-gp x3 ({ablation})")
    eap = attribute(_problem(gpt2, ablation), "eap", progress=False)
    assert (fast - eap).abs().max() > 1e-3 * eap.abs().max()  # the path moved


def test_small_steps_approach_eap(gpt2):
    """As ``step`` -> 0 every point tends to the clean run, so the scores tend to EAP's; the
    difference shrinks in proportion to the step (first order)."""
    with float64(gpt2):
        eap = attribute(_problem(gpt2), "eap", progress=False)
        errs = [(eap_gp(_problem(gpt2), steps=2, step=s, progress=False) - eap).abs().max()
                for s in (1e-2, 1e-3)]
    scale = eap.abs().max()
    assert errs[1] <= 1e-2 * scale
    assert 5 < errs[0] / errs[1] < 20  # linear in the step: 10x smaller step, ~10x closer


def test_position_aware_scores_sum_to_the_unsplit_ones(gpt2):
    p = _problem(gpt2, n=4, positions="tokens")
    split = p.graph.to_dense(eap_gp(p, 2, progress=False)).sum(-1)
    whole = gpt2.graph.to_dense(eap_gp(_problem(gpt2, n=4), 2, progress=False))
    assert torch.allclose(split, whole, atol=1e-5 * (1 + float(whole.abs().max())))


def test_eap_gp_is_a_method_run_by_discover(gpt2_path):
    from acdc_engine import discover

    m = registry().method("eap-gp")
    assert m.defaults == {"gp_steps": 5, "gp_step": 1.0}
    task = Task("rand", lambda n, s: random_pairs(n or 6, seed=s), model=str(gpt2_path))
    res = discover(task=task, method="eap-gp", settings={"gp_steps": 2}, progress=False,
                   track=False, curve=False, n_edges=30)
    assert 0 < res.circuit.number_of_edges() <= 30


def test_refusals_say_why_in_one_line(gpt2):
    with pytest.raises(AcdcError, match="not differentiable"):
        eap_gp(_problem(gpt2, metric="accuracy", n=4), progress=False)
    p = _problem(gpt2, n=4)
    for kw, what in [({"steps": 0}, "steps"), ({"step": 0.0}, "step"),
                     ({"step": float("nan")}, "step"), ({"step": -1.0}, "step")]:
        with pytest.raises(AcdcError, match=f"eap-gp {what} ") as e:
            eap_gp(p, progress=False, **kw)
        assert "\n" not in str(e.value)
    for bad in ({"gp_steps": 0}, {"gp_step": 0.0}):
        with pytest.raises(AcdcError):
            registry().method("eap-gp").configure(bad)
