"""Descriptive tools: attention patterns, logit lens, DLA and token attribution."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.errors import AcdcError
from acdc_engine.evidence import (
    attention_patterns,
    direct_logit_attribution,
    logit_lens,
    residual_stream,
    token_attribution,
)

IDS = torch.tensor([[2, 5, 7, 3, 9, 4], [6, 2, 2, 8, 3, 5]])


@pytest.mark.parametrize("name", ["gpt2", "llama", "tracr"])
def test_attention_patterns_shape_rows_and_causality(name, request):
    model = request.getfixturevalue(name)
    impl = model.hf.config._attn_implementation
    pats = attention_patterns(model, IDS)
    g = model.graph
    assert pats.shape == (g.n_layers, g.n_heads, 2, 6, 6)
    assert torch.allclose(pats.sum(-1), torch.ones(()), atol=1e-5)
    assert model.hf.config._attn_implementation == impl  # restored
    if name != "tracr":  # tracr programs attend both ways; HF LMs are causal
        assert float(pats.triu(1).abs().max()) == 0.0
    assert float(pats.std()) > 1e-3  # not uniform: real weights


def test_gpt2_patterns_match_hand_computation(gpt2):
    """Layer 0 head 1 from the weights: softmax(q k^T / sqrt(dh)) with a causal mask."""
    hf = gpt2.hf
    blk = hf.transformer.h[0]
    x = blk.ln_1(gpt2.adapter.embed(IDS))
    d, H = gpt2.adapter.d_model, gpt2.adapter.n_heads
    dh = d // H
    qkv = blk.attn.c_attn(x)
    q, k = qkv[..., :d], qkv[..., d : 2 * d]
    qh, kh = q[..., dh : 2 * dh], k[..., dh : 2 * dh]
    s = qh @ kh.transpose(-1, -2) / dh**0.5
    s = s.masked_fill(torch.ones(6, 6, dtype=torch.bool).triu(1), float("-inf"))
    want = s.softmax(-1)
    assert torch.allclose(attention_patterns(gpt2, IDS)[0, 1], want, atol=1e-5)


@pytest.mark.parametrize("name", ["gpt2", "tracr"])
def test_residual_stream_last_layer_gives_the_models_logits(name, request):
    model = request.getfixturevalue(name)
    resid = residual_stream(model, IDS)
    assert resid.shape[0] == model.graph.n_layers + 1
    got = model.adapter.unembed(resid[-1]).detach()
    ref = model.reference_logits(IDS)
    assert float((got - ref).abs().max() / ref.abs().max()) < 1e-5


def test_residual_stream_matches_hf_hidden_states(gpt2):
    with torch.no_grad():
        hs = gpt2.hf(IDS, output_hidden_states=True).hidden_states
    resid = residual_stream(gpt2, IDS)
    for layer in range(gpt2.graph.n_layers):  # HF's last entry is after ln_f
        assert torch.allclose(resid[layer], hs[layer], atol=1e-5)


def test_logit_lens_final_layer_is_the_model(gpt2):
    answer, wrong = torch.tensor([3, 4]), torch.tensor([5, 6])
    lens = logit_lens(gpt2, IDS, answer, wrong)
    assert lens.logit_diff.shape == (gpt2.graph.n_layers + 1, 2)
    logits = gpt2.reference_logits(IDS)[:, -1]
    want = logits[[0, 1], answer] - logits[[0, 1], wrong]
    assert torch.allclose(lens.logit_diff[-1], want, atol=1e-4)
    rank = (logits > logits[[0, 1], answer][:, None]).sum(-1)
    assert lens.answer_rank[-1].tolist() == rank.tolist()
    top = logits.softmax(-1).topk(5)
    assert [t for t, _ in lens.top_tokens[-1][0]] == top.indices[0].tolist()
    assert lens.top_tokens[-1][1][0][1] == pytest.approx(float(top.values[1, 0]), abs=1e-5)
    only = logit_lens(gpt2, IDS, 3)  # no wrong answer: the answer's logit
    assert torch.allclose(only.logit_diff[-1], logits[:, 3], atol=1e-4)


def test_dla_sums_to_the_direct_effect_on_tracr(tracr, tracr_problem, make_problem):
    """No final norm, linear head, linear metric: the writers' DLA sums exactly to the metric
    change when every edge into the logits reads the baseline instead."""
    g = tracr_problem.graph
    cut = torch.ones(g.n_writers, g.n_readers)
    cut[:, g.logits_slot] = 0
    for ablation in ("zero", "corrupted"):
        p = make_problem(tracr, ablation=ablation)
        dla = direct_logit_attribution(p, baseline=None if ablation == "corrupted" else "zero")
        assert dla.shape == (g.n_writers,)
        full, direct_cut = p.evaluate([None, cut])
        assert float(dla.sum()) == pytest.approx(full - direct_cut, rel=1e-4, abs=1e-4)
        assert float(dla.abs().min()) < float(dla.abs().max()) / 2  # not one number copied


def test_dla_with_ablation_baseline_is_the_eap_score_of_edges_into_logits(gpt2_problem):
    from acdc_engine.scoring import attribute

    p = gpt2_problem
    g = p.graph
    eap = g.to_dense(attribute(p, "eap").float())[:, g.logits_slot]
    dla = direct_logit_attribution(p, baseline=None)
    assert torch.allclose(dla, -eap, atol=1e-4, rtol=1e-4)  # EAP: corrupted - clean


def test_integrated_gradients_is_complete(gpt2_problem):
    """IG's positions sum to metric(clean) - metric(corrupted), converging with the steps."""
    p = gpt2_problem
    full = torch.cat([p.metric(p.model.reference_logits(b.clean)[:, -1], b) for b in p.batches])
    corr = torch.cat([p.metric(p.model.reference_logits(b.corrupted)[:, -1], b)
                      for b in p.batches])
    errs = []
    for steps in (4, 32):
        attr = token_attribution(p, "integrated_gradients", steps=steps)
        assert attr.shape == (p.n_examples, p.batches[0].clean.shape[1])
        errs.append(float((attr.sum(1) - (full - corr)).abs().max()))
    scale = float((full - corr).abs().max())
    assert errs[1] < 1e-3 * scale and errs[1] < errs[0] / 10


def test_input_x_grad_on_a_linear_path(tracr_problem):
    """input_x_grad equals (x - x0) . grad exactly: check one example by autograd here."""
    p = tracr_problem
    attr = token_attribution(p, "input_x_grad")
    b = p.batches[0]
    ad = p.model.adapter
    x = ad.embed(b.clean).detach().requires_grad_(True)
    from acdc_engine.patching import LAST, PatchPlan, run

    p.metric(run(ad, b.clean, PatchPlan(embed=x), LAST)[:, -1], b).sum().backward()
    want = ((x - ad.embed(b.corrupted)) * x.grad).sum(-1)
    assert torch.allclose(attr[: len(b)], want.detach(), atol=1e-4, rtol=1e-4)
    with pytest.raises(AcdcError):
        token_attribution(p, "saliency")
