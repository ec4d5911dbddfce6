"""The model-family invariants of ARCHITECTURE.md, on every supported family.

1. Keeping every edge reproduces the model's own logits (as traced by nnsight).
2. Removing every edge reproduces the ablated (corrupted) run's logits.
3. Removing all edges into a node equals node-level patching of that node's input,
   done independently with an nnsight intervention on the Hugging Face model.
4. EAP agrees with exact single-edge patching to first order (checked literally, with the
   corrupted run shrunk towards the clean one), and ranks edges like exact patching does.
"""

from __future__ import annotations

import pytest
import torch

from acdc_engine.patching import Ablation, PatchPlan, run, run_with_writers
from acdc_engine.testing.numerics import assert_close_to_f64, float64

#: per family: the nnsight module whose input is (MLP of layer 0, heads of layer 1, logits)
NODE_INPUT_MODULES = {
    "gpt2": ("transformer.h.0.ln_2", "transformer.h.1.ln_1", "transformer.ln_f"),
    "llama": ("model.layers.0.post_attention_layernorm", "model.layers.1.input_layernorm",
              "model.norm"),
    "tracr": ("blocks.0.mlp", "blocks.1.attn", "unembed"),
}

def held(ours, own, model, own64, what=""):
    """``ours`` (the patched forward) against ``own`` (the model's own float32 computation of
    the same logits) and ``own64()``, that computation run with the model in float64. Bound:
    4x the model's own float32 error against float64 + 16 eps max|logit| (not materially worse
    than the model's own forward)."""
    with torch.no_grad(), float64(model):
        ref = own64()
    assert_close_to_f64(ours, own, ref, factor=4, ulps=16, what=what)


def ids_pair(model, seed=0, batch=3, length=6):
    g = torch.Generator().manual_seed(seed)
    v = model.hf.config.vocab_size
    return (torch.randint(1, v, (batch, length), generator=g),
            torch.randint(1, v, (batch, length), generator=g))


def corrupted_acts(model, corrupted):
    with torch.no_grad():
        _, acts = run_with_writers(model.adapter, corrupted)
    return acts


def test_full_circuit_is_the_model(family_model):
    clean, corrupted = ids_pair(family_model)
    g = family_model.graph
    ref = family_model.reference_logits(clean)
    with torch.no_grad():
        plain = run(family_model.adapter, clean)
        full = run(family_model.adapter, clean,
                   PatchPlan(mask=torch.ones(g.n_writers, g.n_readers),
                             ablated=corrupted_acts(family_model, corrupted)))
    held(plain, ref, family_model, lambda: family_model.reference_logits(clean), "plain run")
    held(full, ref, family_model, lambda: family_model.reference_logits(clean), "full circuit")


@pytest.mark.parametrize("ablation", ["corrupted", "zero"])
def test_empty_circuit_is_the_ablated_run(family_model, ablation):
    clean, corrupted = ids_pair(family_model, seed=1)
    g = family_model.graph
    empty = torch.zeros(g.n_writers, g.n_readers)
    with torch.no_grad():
        if ablation == "corrupted":
            got = run(family_model.adapter, clean,
                      PatchPlan(mask=empty, ablated=corrupted_acts(family_model, corrupted)))
            want = family_model.reference_logits(corrupted)
            held(got, want, family_model, lambda: family_model.reference_logits(corrupted),
                 "empty circuit, corrupted")
        else:  # zero: every reader sees only the constant biases, whatever the input
            got = run(family_model.adapter, clean, PatchPlan(mask=empty, ablated=None))
            want = run(family_model.adapter, corrupted, PatchPlan(mask=empty, ablated=None))
            # the same run from the other prompt in float64 (RMSNorm amplifies the rounding
            # left in a near-zero residual: the measured float32 error carries that)
            held(got, want, family_model, lambda: run(family_model.adapter, corrupted,
                                                      PatchPlan(mask=empty.double(), ablated=None)),
                 "empty circuit, zero")


def _nnsight_node_patch(model, clean, corrupted, module_path):
    """Logits of ``clean`` with the input of module ``module_path`` taken from ``corrupted``."""
    def module(nn):
        obj = nn
        for part in module_path.split("."):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        return obj

    nn = model.nn
    with torch.no_grad():
        with nn.trace(corrupted):
            saved = module(nn).input.save()
        with nn.trace(clean):
            module(nn).input = saved
            logits = nn.output.logits.save()
    return logits


def _reader_columns(g, node):
    from acdc_engine.graph import EdgeKind

    n = g.node(node)
    if n.kind.value == "attn":
        return [g.reader_slot(n, k) for k in (EdgeKind.Q, EdgeKind.K, EdgeKind.V)]
    return [g.reader_slot(n)]


@pytest.mark.parametrize("target", ["mlp0", "attn1", "logits"])
def test_cutting_a_node_equals_node_patching(family_model, target):

    model = family_model
    clean, corrupted = ids_pair(model, seed=2)
    g = model.graph
    mlp0, attn1, logits = NODE_INPUT_MODULES[model.family]
    module, nodes = {
        "mlp0": (mlp0, ["m0"]),
        "attn1": (attn1, [f"a1.{h}" for h in range(g.n_heads)]),
        "logits": (logits, ["logits"]),
    }[target]
    mask = torch.ones(g.n_writers, g.n_readers)
    for node in nodes:
        for col in _reader_columns(g, node):
            mask[:, col] = 0
    with torch.no_grad():
        got = run(model.adapter, clean,
                  PatchPlan(mask=mask, ablated=corrupted_acts(model, corrupted)))
    want = _nnsight_node_patch(model, clean, corrupted, module)
    held(got, want, model, lambda: _nnsight_node_patch(model, clean, corrupted, module),
         f"cut {target}")
    assert (got - model.reference_logits(clean)).abs().max() > 1e-3  # the patch did something


def test_eap_is_exact_to_first_order(family_model):
    """Shrink the corrupted run towards the clean one by eps: exact/eps -> EAP/eps."""
    from acdc_engine.testing import first_order_error

    model = family_model
    model.hf.double()
    try:
        clean, corrupted = ids_pair(model, seed=3, batch=2, length=5)
        err, scale = first_order_error(model, clean, corrupted, eps=1e-4)
        assert scale > 1e-2
        # not a rounding bound (float64: ~1e-12): the neglected second-order term is O(eps)
        # = 1e-4 of the effect times the curvature; 1e-2 allows curvature up to 100
        assert err < 1e-2, f"relative first-order error {err:.2e}"
    finally:
        model.hf.float()


def test_eap_ranks_edges_like_exact_patching(family_model):
    from scipy.stats import spearmanr

    from acdc_engine.scoring import attribute
    from acdc_engine.scoring import exact_scores
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.tasks import prepare
    from acdc_engine.testing import random_pairs

    metric = registry().metric("logit_diff")
    model = family_model
    data = prepare("t", model.tokenizer, random_pairs(16))
    problem = Problem.build(model, data, metric, Ablation("corrupted"), 8)
    eap = attribute(problem, "eap", progress=False)
    ig = attribute(problem, "eap-ig", ig_steps=8, progress=False)
    exact = exact_scores(problem, progress=False)
    rho_eap = spearmanr(eap.abs(), exact.abs()).statistic
    rho_ig = spearmanr(ig.abs(), exact.abs()).statistic
    assert rho_eap > 0.6, rho_eap
    assert rho_ig > 0.6, rho_ig


@pytest.mark.parametrize("kind", ["corrupted", "zero", "mean"])
def test_eap_ig_matches_a_step_by_step_reference(gpt2, kind):
    """EAP-IG sums its steps' reader gradients before the edge product: same scores as forming
    mask.grad at every interpolation point, the textbook way."""
    from acdc_engine.scoring import attribute
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.tasks import prepare
    from acdc_engine.testing import random_pairs

    metric = registry().metric("logit_diff")
    problem = Problem.build(gpt2, prepare("t", gpt2.tokenizer, random_pairs(6)), metric, kind)
    steps, g = 4, gpt2.graph

    def step_by_step():
        """The textbook scores, in the model's dtype (float64 inside ``float64(gpt2)``)."""
        abl, n = problem.ablation, 0
        total = torch.zeros(g.n_writers, g.n_readers, dtype=gpt2.dtype)
        for batch in problem.batches:
            ablated = abl.activations(gpt2.adapter, batch)
            with torch.no_grad():
                _, clean = run_with_writers(gpt2.adapter, batch.clean)
            base = torch.zeros_like(clean) if ablated is None else ablated.expand_as(clean)
            for step in range(1, steps + 1):
                mask = torch.ones(g.n_writers, g.n_readers, dtype=gpt2.dtype, requires_grad=True)
                embed = base[0] + step / steps * (clean[0] - base[0])
                out = run(gpt2.adapter, batch.clean,
                          PatchPlan(mask=mask, delta=clean - base, embed=embed))
                metric(out[:, -1], batch).sum().backward()
                total += mask.grad
            n += len(batch)
        return g.from_dense(-total / (steps * n))

    reference = step_by_step()
    with float64(gpt2):
        ref64 = step_by_step()
    got = attribute(problem, "eap-ig", ig_steps=steps, progress=False)
    assert reference.abs().max() > 0
    # bound: 4x the step-by-step float32 error against its float64 run + 16 eps max|score|
    assert_close_to_f64(got, reference, ref64, factor=4, ulps=16, what=f"eap-ig {kind}")
