"""SAE feature attribution by gradients (attribution patching) against the exact effects."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.errors import AcdcError
from acdc_engine.evidence.sae import (
    SAE,
    feature_attribution,
    feature_effects,
    spliced_metric,
    train_sae,
)


def _random_sae(d: int, n: int, layer: int, seed: int = 0) -> SAE:
    torch.manual_seed(seed)
    sae = SAE(d, n, layer)
    with torch.no_grad():
        sae.b_enc.normal_(0.0, 0.1)  # most features active on most tokens
        sae.W_dec.mul_(0.5)
    return sae


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra, rb = a.argsort().argsort().double(), b.argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


@pytest.mark.parametrize("source", ["zero", "corrupted"])
def test_linear_case_is_exact(tracr, make_problem, source):
    """tracr has no final norm and logit difference is linear in the logits: with the SAE on
    the last layer only the unembedding reads it, so the estimate is every feature's exact
    effect."""
    prob = make_problem(tracr, n=8, batch_size=4)
    layer = prob.graph.n_layers - 1
    sae = _random_sae(tracr.adapter.d_model, 12, layer)
    att = feature_attribution(prob, sae, source=source)
    exact = feature_effects(prob, sae, features=list(range(12)), source=source)
    want = torch.tensor([exact[j] for j in range(12)])
    torch.testing.assert_close(att, want, atol=1e-4, rtol=1e-4)
    assert want.abs().max() > 1e-2  # the features matter


def test_tiny_step_agrees_to_first_order(gpt2, make_problem):
    """Shrinking a feature by a factor (1 - eps) changes the metric by eps * attribution,
    up to O(eps^2), on a nonlinear model (GPT-2: norms, attention, GELU)."""
    prob = make_problem(gpt2, n=8, batch_size=4)
    sae = _random_sae(gpt2.adapter.d_model, 24, 0)
    att = feature_attribution(prob, sae)  # source zero: the step is -f
    base = spliced_metric(prob, sae)
    eps = 1e-2
    for j in att.abs().argsort(descending=True)[:4].tolist():
        def shrink(f, j=j):
            f = f.clone()
            f[..., j] *= 1 - eps
            return f
        exact = float((spliced_metric(prob, sae, shrink) - base).mean())
        assert exact == pytest.approx(eps * float(att[j]), rel=0.05, abs=1e-6)
        assert abs(exact) > 1e-5


def test_rank_agrees_with_the_exact_effects_on_a_trained_sae(gpt2, make_problem):
    prob = make_problem(gpt2, n=8, batch_size=8)
    sae = train_sae(prob, layer=0, n_features=32, l1=0.01, steps=200)
    att = feature_attribution(prob, sae)
    exact = feature_effects(prob, sae, features=list(range(32)))
    want = torch.tensor([exact[j] for j in range(32)])
    live = want != 0  # dead features: both exactly 0
    assert int(live.sum()) >= 8
    assert bool((att[~live] == 0).all())
    assert _spearman(att[live], want[live]) > 0.8


def test_identity_sae_sums_to_the_edge_gradient_of_zeroing_the_stream(gpt2, make_problem):
    """With the identity dictionary [I, -I] (x_hat = x exactly), feature j is relu(x_j) and
    d + j is relu(-x_j), so the zero-source estimates sum to -x . dmetric/dx over the readers
    above the layer: the patched forward's own edge gradient (mask.grad of the input's edges,
    with delta = x), computed without the grad sink."""
    from acdc_engine.evidence.descriptive import residual_stream
    from acdc_engine.patching import LAST, PatchPlan, run, run_with_writers

    prob = make_problem(gpt2, n=8, batch_size=4)
    g, a = prob.graph, gpt2.adapter
    att = feature_attribution(prob, SAE.identity(a.d_model, 0))
    first = g.readers_per_layer  # readers above layer 0
    want = 0.0
    for b in prob.batches:
        x = residual_stream(gpt2, b.clean)[1]
        mask = torch.ones(g.n_writers, g.n_readers, requires_grad=True)
        _, acts = run_with_writers(a, b.clean)
        abl = acts.clone()
        abl[0] = acts[0] - x  # delta of the input node = x
        logits = run(a, b.clean, PatchPlan(mask=mask, ablated=abl), LAST)
        prob.metric.score(logits, b).sum().backward()
        want += float(mask.grad[0, first:].sum())
    assert float(att.sum()) == pytest.approx(-want / prob.n_examples, rel=1e-4)
    assert abs(want) > 1e-3


def test_refuses_unknown_sources_and_non_differentiable_metrics(gpt2, make_problem):
    prob = make_problem(gpt2, n=4, batch_size=4)
    sae = _random_sae(gpt2.adapter.d_model, 4, 0)
    with pytest.raises(AcdcError, match="source"):
        feature_attribution(prob, sae, source="mean")
    with pytest.raises(AcdcError, match="differentiable"):
        feature_attribution(make_problem(gpt2, n=4, metric="accuracy"), sae)
