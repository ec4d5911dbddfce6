"""The attribution variants (acdc_engine.scoring.variants, .routes): each against the
computation it is defined as, made of separate patched runs (or the model's own hidden states),
with float32 tolerances derived from the same reference in float64 (testing.numerics)."""

from __future__ import annotations

import pytest
import torch

from acdc_engine import load_model
from acdc_engine.errors import AcdcError
from acdc_engine.patching import PatchPlan, ReadOut, run, run_with_writers
from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.scoring import attribute
from acdc_engine.scoring.routes import information_flow_routes, reader_inputs
from acdc_engine.scoring.variants import (
    atp_graddrop,
    clean_corrupted,
    eap_ig_activations,
    layer_nodes,
)
from acdc_engine.tasks import Task, prepare
from acdc_engine.testing import random_pairs
from acdc_engine.testing.numerics import assert_close_to_f64, float64


def _problem(lm, ablation="corrupted", metric="logit_diff", n=6, positions=None, rows=None):
    data = prepare("t", lm.tokenizer, rows or random_pairs(n, seed=3))
    return Problem.build(lm, data, registry().metric(metric), ablation, batch_size=4,
                         positions=positions)  # 2 batches: 4 + 2 rows


def _grad(p, batch, plan, ids=None, keep=False):
    """``mask.grad`` of one run (and its writer outputs with ``keep``)."""
    ids = batch.clean if ids is None else ids
    if keep:
        logits, outs = run_with_writers(p.model.adapter, ids, plan, ReadOut.of(batch))
    else:
        logits, outs = run(p.model.adapter, ids, plan, ReadOut.of(batch)), None
    p.metric.score(logits, batch).sum().backward()
    return plan.mask.grad, outs


def _mask(p, fill=1.0):
    return p.graph.full_mask(fill, dtype=p.model.dtype, requires_grad=True)


def _by_runs(lm, points, ablation="corrupted"):
    """The reference: ``-(1/len(points)) sum over points of mask.grad``, one separate run per
    point, averaged over examples; ``points(p, batch, abl, delta)`` -> [(ids, plan)] after the
    clean run (alpha = 1 / EAP's point), which is always the first point."""
    p = _problem(lm, ablation)
    total, n, k = 0.0, 0, 0
    with lm.frozen():
        for i, batch in enumerate(p.batches):
            abl = p.ablated(i)
            g0, outs = _grad(p, batch, PatchPlan(mask=_mask(p), ablated=abl), keep=True)
            delta = outs if abl is None else outs - abl
            extra = points(p, batch, abl, delta)
            total = total + g0 + sum(_grad(p, batch, plan, ids)[0] for ids, plan in extra)
            n, k = n + len(batch), 1 + len(extra)
    return p.graph.from_dense(-(total / (k * n))).float()


def _check(lm, fast_fn, points, ablation="corrupted", what=""):
    fast = fast_fn(_problem(lm, ablation))
    plain = _by_runs(lm, points, ablation)
    with float64(lm):
        ref = _by_runs(lm, points, ablation)
    return assert_close_to_f64(fast, plain, ref, what=what)  # 4 x plain's error + 16 ulps


def _no_points(p, batch, abl, delta):
    return []


# ----- EAP-IG over activations --------------------------------------------------------------


@pytest.mark.parametrize("name", ["gpt2", "llama"])
def test_ig_act_all_with_one_step_is_eap(name, request):
    lm = request.getfixturevalue(name)
    _check(lm, lambda p: eap_ig_activations(p, 1, "all", progress=False), _no_points,
           what=f"eap-ig-act all, 1 step vs EAP ({name})")


@pytest.mark.parametrize("ablation", ["corrupted", "mean", "zero"])
def test_ig_act_all_is_the_mean_gradient_over_shifted_writers(gpt2, ablation):
    """steps=3: the clean run and two runs with every writer's output read as ``out - (1 -
    alpha) delta`` (mask alpha everywhere, delta fixed), each a separate run's mask.grad."""
    steps = 3

    def points(p, batch, abl, delta):
        return [(None, PatchPlan(mask=_mask(p, k / steps), delta=delta))
                for k in range(1, steps)]

    _check(gpt2, lambda p: eap_ig_activations(p, steps, "all", progress=False), points,
           ablation, what=f"eap-ig-act all x3 ({ablation})")


def test_ig_act_layer_with_one_step_holds_each_node_fixed(gpt2):
    """With one step every point is the clean run with one node's output held fixed (MIB):
    an edge into the logits scores exactly as in EAP (no run changes the logits' gradient),
    an edge into the last MLP (N - 1)/N of EAP (its own node's run gives it no gradient), and
    an edge into the first layer's heads less than EAP wherever later nodes carry gradient."""
    g = gpt2.graph
    N = len(layer_nodes(g))
    fast = g.to_dense(eap_ig_activations(_problem(gpt2), 1, "layer", progress=False))
    plain = g.to_dense(attribute(_problem(gpt2), "eap", progress=False))
    with float64(gpt2):
        ref = g.to_dense(attribute(_problem(gpt2), "eap", progress=False))
    logits, last = g.logits_slot, g.mlp_slot(g.n_layers - 1)
    assert_close_to_f64(fast[:, logits], plain[:, logits], ref[:, logits],
                        what="ig-act layer x1: logits column = EAP")
    scale = (N - 1) / N
    assert_close_to_f64(fast[:, last], scale * plain[:, last], scale * ref[:, last],
                        what="ig-act layer x1: last MLP column = (N-1)/N EAP")
    first = g.attn_slots(0)
    assert not torch.allclose(fast[:, first], plain[:, first], atol=1e-4)


def test_ig_act_layer_runs_once_per_node_and_step(gpt2, monkeypatch):
    import acdc_engine.scoring.variants as variants

    calls = []
    real = variants._backward
    monkeypatch.setattr(variants, "_backward",
                        lambda *a, **k: calls.append(a[2].mask.detach().min().item())
                        or real(*a, **k))
    p = _problem(gpt2, n=4)
    eap_ig_activations(p, 2, "layer", progress=False)
    N = len(layer_nodes(gpt2.graph))
    assert len(calls) == N * 2 and sorted(set(calls)) == [0.5, 1.0]


# ----- clean-corrupted ----------------------------------------------------------------------


def test_clean_corrupted_is_the_mean_of_eap_at_both_points(gpt2):
    """The corrupted point: the model's own run on the corrupted prompts (every edge kept),
    its mask.grad taken with the clean - corrupted delta."""

    def points(p, batch, abl, delta):
        return [(batch.corrupted, PatchPlan(mask=_mask(p), delta=delta))]

    _check(gpt2, lambda p: clean_corrupted(p, progress=False), points,
           what="clean-corrupted vs two runs")


def _corrupted_point_at_mask_zero(lm):
    """The corrupted point as the run with every edge removed (mask 0, the corrupted run's
    outputs as ablated): its reader gradients (a plain sink) times clean - corrupted."""
    from acdc_engine.patching import Context, GradSink

    p = _problem(lm)
    g = p.graph
    total, n = torch.zeros(g.n_writers, g.n_readers, dtype=torch.float64), 0
    with lm.frozen():
        for i, batch in enumerate(p.batches):
            abl = p.ablated(i)
            with torch.no_grad():
                _, outs = run_with_writers(lm.adapter, batch.clean)
            sink = torch.zeros(g.n_readers, *outs.shape[1:], dtype=lm.dtype)
            logits = run(lm.adapter, batch.clean, PatchPlan(mask=_mask(p, 0.0), ablated=abl),
                         ReadOut.of(batch), Context(grad_sink=GradSink(sink)))
            p.metric.score(logits, batch).sum().backward()
            total += torch.einsum("ubpd,vbpd->uv", (outs - abl).double(), sink.double())
            n += len(batch)
    return g.from_dense(-(total * g.valid) / n).float()


def test_the_corrupted_point_is_the_run_with_every_edge_removed(gpt2):
    """With corrupted ablation, the model's run on the corrupted prompts (what clean-corrupted
    uses) and the run of the clean prompts at mask 0 give the same gradients."""
    def points(p, batch, abl, delta):
        return [(batch.corrupted, PatchPlan(mask=_mask(p), delta=delta))]

    def at_corrupted(lm):  # 2 x the reference minus EAP: the corrupted point alone
        return 2 * _by_runs(lm, points) - _by_runs(lm, _no_points)

    fast = _corrupted_point_at_mask_zero(gpt2)
    plain = at_corrupted(gpt2)
    with float64(gpt2):
        ref = at_corrupted(gpt2)
    assert_close_to_f64(fast, plain, ref, what="corrupted point: mask 0 vs corrupted prompts")


@pytest.mark.parametrize("ablation", ["mean", "zero"])
def test_clean_corrupted_with_mean_or_zero_starts_from_the_ablated_embeddings(gpt2, ablation):
    def points(p, batch, abl, delta):
        x = torch.zeros_like(delta[0]) if abl is None else abl[0].expand_as(delta[0])
        return [(None, PatchPlan(mask=_mask(p), delta=delta, embed=x))]

    _check(gpt2, lambda p: clean_corrupted(p, progress=False), points, ablation,
           what=f"clean-corrupted ({ablation})")


# ----- AtP* GradDrop ------------------------------------------------------------------------


def _atp_per_example(lm):
    """[W, examples] AtP node effects ``sum_v mask.grad[u, v]``, one example per run."""
    p = _problem(lm)
    cols = []
    with lm.frozen():
        for i, batch in enumerate(p.batches):
            abl = p.ablated(i)
            for j in range(len(batch)):
                one = batch.select([j])
                plan = PatchPlan(mask=_mask(p), ablated=abl[:, j:j + 1])
                cols.append(_grad(p, one, plan)[0].sum(1))
    return torch.stack(cols, 1)


def test_graddrop_of_the_last_layer_writers_is_mean_abs_atp(gpt2):
    """Dropping a layer below a writer leaves its gradient as it is and dropping its own
    layer zeroes it, so a last-layer writer's score is (L-1)/(L-1) * mean |AtP|: per example,
    the sum of its edges' mask.grad."""
    g = gpt2.graph
    last = slice(g.attn_upstream(g.n_layers - 1), g.n_writers)
    fast = g.to_dense(atp_graddrop(_problem(gpt2), progress=False))
    plain = _atp_per_example(gpt2).abs().mean(1)
    with float64(gpt2):
        ref = _atp_per_example(gpt2).abs().mean(1)
    node = fast[:, g.logits_slot]  # an edge into the logits carries its writer's score
    assert_close_to_f64(node[last], plain[last], ref[last], what="graddrop: last-layer writers")
    valid = g.valid
    assert bool((fast[valid] >= 0).all())
    for v, (reader, _) in enumerate(g.readers()[:-1]):  # the less important of the two nodes
        w = g.writer_index(reader)
        assert torch.equal(fast[valid[:, v], v], torch.minimum(node[valid[:, v]], node[w]))


# ----- information flow routes --------------------------------------------------------------


def test_routes_reader_inputs_are_the_models_residual_stream(gpt2):
    """Each layer's attention readers read the model's own hidden state before the block
    (biases included): the writers' outputs plus the attention biases before it."""
    p = _problem(gpt2, n=4)
    batch, g = p.batches[0], gpt2.graph
    with float64(gpt2), torch.no_grad():
        from acdc_engine.patching import writer_outputs

        outs = writer_outputs(gpt2.adapter, batch.clean)
        biases = [gpt2.adapter.attn_bias(layer) for layer in range(g.n_layers)]
        inputs = {cols.start: x for _, cols, x in reader_inputs(outs, biases, g)}
        hidden = gpt2.hf(batch.clean, output_hidden_states=True).hidden_states
        for layer in range(g.n_layers):
            got, want = inputs[g.attn_slots(layer).start], hidden[layer]
            assert (got - want).abs().max() <= 1e-12 * (1 + want.abs().max())


def test_routes_are_shares_of_each_readers_input(gpt2):
    g = gpt2.graph
    dense = g.to_dense(information_flow_routes(_problem(gpt2), progress=False))
    sums = dense.sum(0)  # every reader's shares sum to 1 at every position, so on average
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    assert bool((dense >= 0).all()) and bool((dense <= 1 + 1e-6).all())


@pytest.fixture(scope="module")
def routed(gpt2_path):
    """A GPT-2 whose routes are known by construction: every attention output and every MLP
    but the first write nothing, and the first MLP writes 1000x what it did."""
    lm = load_model(str(gpt2_path), device="cpu")
    with torch.no_grad():
        for layer, block in enumerate(lm.hf.transformer.h):
            block.attn.c_proj.weight.zero_()
            block.attn.c_proj.bias.zero_()
            if layer:
                block.mlp.c_proj.weight.zero_()
                block.mlp.c_proj.bias.zero_()
            else:
                block.mlp.c_proj.weight.mul_(1000.0)
                block.mlp.c_proj.bias.mul_(1000.0)
    return lm


def test_routes_follow_the_writer_that_dominates(routed):
    g = routed.graph
    dense = g.to_dense(information_flow_routes(_problem(routed), progress=False))
    m0 = g.attn_upstream(0) + g.n_heads
    silent = [u for u in range(1, g.n_writers) if u != m0]
    assert bool((dense[silent] == 0).all())  # a writer of zeros is no part of any input
    # before the first MLP the embeddings are the whole input; after it, mostly the MLP
    assert bool((dense[0, g.attn_slots(0)] == 1).all()) and dense[0, g.mlp_slot(0)] == 1
    after = [v for v in range(g.n_readers) if v > g.mlp_slot(0)]
    assert bool((dense[m0, after] > 0.9).all())
    # threshold 0.5: the embeddings' small share after the MLP counts as none, the rest stays
    thr = g.to_dense(information_flow_routes(_problem(routed), 0.5, progress=False))
    assert bool((thr[0, after] == 0).all()) and torch.equal(thr[m0, after], dense[m0, after])


def test_routes_need_no_counterfactual_nor_wrong_answers(gpt2):
    rows = [{k: v for k, v in r.items() if k != "wrong_answer"} for r in random_pairs(6, seed=3)]
    p = _problem(gpt2, metric="kl_div", rows=rows)
    scores = information_flow_routes(p, progress=False)
    other = [dict(r, corrupted=random_pairs(1, seed=9 + i)[0]["corrupted"])
             for i, r in enumerate(rows)]
    assert torch.equal(scores, information_flow_routes(_problem(gpt2, metric="kl_div",
                                                                rows=other), progress=False))


# ----- methods, settings, refusals ----------------------------------------------------------


def test_the_variants_are_methods_run_by_discover(gpt2_path):
    from acdc_engine import discover

    task = Task("rand", lambda n, s: random_pairs(n or 6, seed=s), model=str(gpt2_path))
    reg = registry()
    assert reg.method("eap-ig-act").defaults == {"ig_steps": 5, "per": "layer"}
    assert reg.method("info-flow-routes").defaults == {"threshold": 0.0}
    for name, settings in [("eap-ig-act", {"ig_steps": 1, "per": "all"}),
                           ("eap-clean-corrupted", {}), ("atp-graddrop", {}),
                           ("atp-qk", {}), ("info-flow-routes", {"threshold": 0.1})]:
        res = discover(task=task, method=name, settings=settings, progress=False, track=False,
                       curve=False, n_edges=30)
        assert 0 < res.circuit.number_of_edges() <= 30, name  # top 30, dangling ones pruned


def test_refusals_say_why_in_one_line(gpt2):
    acc = _problem(gpt2, metric="accuracy", n=4)
    for fn in (lambda p: eap_ig_activations(p, 2, progress=False),
               lambda p: clean_corrupted(p, progress=False),
               lambda p: atp_graddrop(p, progress=False)):
        with pytest.raises(AcdcError, match="not differentiable"):
            fn(acc)
    p = _problem(gpt2, n=4)
    with pytest.raises(AcdcError, match="ig_steps"):
        eap_ig_activations(p, 0, progress=False)
    with pytest.raises(AcdcError, match="per must be"):
        eap_ig_activations(p, 2, "node", progress=False)
    with pytest.raises(AcdcError, match="per must be"):
        registry().method("eap-ig-act").configure({"per": "node"})
    pos = _problem(gpt2, n=4, positions="tokens")
    with pytest.raises(AcdcError, match="without --positions"):
        atp_graddrop(pos, progress=False)
    from acdc_engine.scoring.qk_fix import atp_qk

    for fn in (information_flow_routes, atp_qk):
        with pytest.raises(AcdcError, match="without --positions"):
            fn(pos, progress=False)


def test_position_aware_graphs_sum_to_the_unsplit_scores(gpt2):
    """With positions, eap-ig-act's (both forms) and clean-corrupted's per-group scores add up
    to the unsplit graph's (the same products, summed per token group)."""
    for fn in (lambda p: eap_ig_activations(p, 2, "layer", progress=False),
               lambda p: eap_ig_activations(p, 2, "all", progress=False),
               lambda p: clean_corrupted(p, progress=False)):
        p = _problem(gpt2, n=4, positions="tokens")
        split = p.graph.to_dense(fn(p)).sum(-1)
        whole = gpt2.graph.to_dense(fn(_problem(gpt2, n=4)))
        assert torch.allclose(split, whole, atol=1e-5 * (1 + float(whole.abs().max())))


# ----- every family -------------------------------------------------------------------------


def _family_checks(lm, name):
    """The MIB layer form's 1-step identity (edges into the logits score as in EAP),
    clean-corrupted against two separate runs; GradDrop and routes finite and nonnegative,
    atp-qk finite."""
    from acdc_engine.scoring.qk_fix import atp_qk

    g = lm.graph
    _check(lm, lambda p: clean_corrupted(p, progress=False),
           lambda p, batch, abl, delta: [(batch.corrupted, PatchPlan(mask=_mask(p),
                                                                     delta=delta))],
           what=f"clean-corrupted ({name})")
    fast = g.to_dense(eap_ig_activations(_problem(lm), 1, "layer", progress=False))
    plain = g.to_dense(attribute(_problem(lm), "eap", progress=False))
    with float64(lm):
        ref = g.to_dense(attribute(_problem(lm), "eap", progress=False))
    col = g.logits_slot
    assert_close_to_f64(fast[:, col], plain[:, col], ref[:, col], what=f"ig-act ({name})")
    for scores in (atp_graddrop(_problem(lm), progress=False),
                   information_flow_routes(_problem(lm), progress=False)):
        assert bool(torch.isfinite(scores).all()) and bool((scores >= 0).all())
    assert bool(torch.isfinite(atp_qk(_problem(lm), progress=False)).all())


@pytest.mark.parametrize("name", ["gpt2", "llama", "qwen2", "neox", "tracr"])
def test_every_family_runs_every_variant(name, request):
    _family_checks(request.getfixturevalue(name), name)


@pytest.mark.parametrize("model_type, cfg", [
    ("gemma2", {"sliding_window": 3, "attn_logit_softcapping": 2.0,
                "final_logit_softcapping": 5.0,
                "layer_types": ["sliding_attention", "full_attention"]}),
    ("phi3", {}), ("opt", {}), ("mixtral", {"sliding_window": 3}),
    ("gpt_neox", {"use_parallel_residual": False})])
def test_the_other_families_run_every_variant(model_type, cfg, tmp_path):
    from acdc_engine.testing import save_hf

    path = save_hf(tmp_path / model_type, model_type, seed=1, **cfg)
    _family_checks(load_model(str(path), device="cpu"), model_type)


def _layer_by_runs(lm, steps):
    """MIB's EAP-IG over activations, one run per (node, step) into a plain [R, b, p, d] sink
    and the edge products formed here: ``-(1/(N steps)) sum_runs delta_u . g_v``."""
    from acdc_engine.patching import Context, GradSink, writer_outputs
    from acdc_engine.scoring.variants import _Frozen

    p = _problem(lm)
    g = p.graph
    total, n = torch.zeros(g.n_writers, g.n_readers, dtype=torch.float64), 0
    nodes = layer_nodes(g)
    with lm.frozen():
        for i, batch in enumerate(p.batches):
            abl = p.ablated(i)
            with torch.no_grad():
                delta = writer_outputs(lm.adapter, batch.clean) - abl
            sink = torch.zeros(g.n_readers, *delta.shape[1:], dtype=lm.dtype)
            for rows, attn, mlp in nodes:
                for k in range(1, steps + 1):
                    mask = g.full_mask(1.0, dtype=lm.dtype)
                    mask[rows] = k / steps
                    plan = PatchPlan(mask=mask.requires_grad_(True), delta=delta)
                    logits = run(_Frozen(lm.adapter, attn, mlp), batch.clean, plan,
                                 ReadOut.of(batch), Context(grad_sink=GradSink(sink)))
                    p.metric.score(logits, batch).sum().backward()
            total += torch.einsum("ubpd,vbpd->uv", delta.double(), sink.double())
            n += len(batch)
    return g.from_dense(-(total * g.valid) / (len(nodes) * steps * n)).float()


def test_ig_act_layer_is_the_mean_over_nodes_and_steps(gpt2):
    fast = eap_ig_activations(_problem(gpt2), 3, "layer", progress=False)
    plain = _layer_by_runs(gpt2, 3)
    with float64(gpt2):
        ref = _layer_by_runs(gpt2, 3)
    assert_close_to_f64(fast, plain, ref, what="ig-act layer x3 vs runs into a plain sink")


# ----- AtP* QK fix --------------------------------------------------------------------------


def _qk_by_runs(lm, layer):
    """Per edge into ``layer``'s queries and keys: the head's output in a patched run with that
    edge removed, minus the clean one, times dm/d out_h (the sum of the gradients of the
    readers the head feeds, from a plain sink), averaged over examples."""
    from acdc_engine.patching import Context, GradSink

    p = _problem(lm)
    g = p.graph
    a0, cols, H = g.attn_upstream(layer), g.attn_slots(layer), g.n_heads
    out = torch.zeros(a0, 2 * H, dtype=torch.float64)
    with lm.frozen():
        for i, batch in enumerate(p.batches):
            abl = p.ablated(i)
            d = lm.adapter.embed(batch.clean[:1, :1]).shape[-1]
            sink = torch.zeros(g.n_readers, *batch.clean.shape, d, dtype=lm.dtype)
            logits, clean = run_with_writers(lm.adapter, batch.clean,
                                             PatchPlan(mask=_mask(p), ablated=abl),
                                             ReadOut.of(batch), Context(grad_sink=GradSink(sink)))
            p.metric.score(logits, batch).sum().backward()
            for c in range(2 * H):
                h = a0 + c % H
                grad = sink[g.valid[h]].sum(0)  # dm/d out_h
                for u in range(a0):
                    mask = g.full_mask(1.0, dtype=lm.dtype)
                    mask[u, cols.start + c] = 0
                    with torch.no_grad():
                        _, outs = run_with_writers(lm.adapter, batch.clean,
                                                   PatchPlan(mask=mask, ablated=abl))
                    out[u, c] += ((outs[h] - clean[h]) * grad).double().sum()
    return out / p.n_examples


def test_atp_qk_is_the_exact_pattern_change_times_the_heads_gradient(gpt2):
    from acdc_engine.scoring.qk_fix import atp_qk

    g, layer = gpt2.graph, gpt2.graph.n_layers - 1
    fast = g.to_dense(atp_qk(_problem(gpt2), progress=False))
    a0, c0 = g.attn_upstream(layer), g.attn_slots(layer).start
    got = fast[:a0, c0:c0 + 2 * g.n_heads]
    plain = _qk_by_runs(gpt2, layer)
    with float64(gpt2):
        ref = _qk_by_runs(gpt2, layer)
    assert_close_to_f64(got, plain, ref, what="atp-qk vs patched runs")
    eap = g.to_dense(attribute(_problem(gpt2), "eap", progress=False))
    v_and_on = [v for v in range(g.n_readers)
                if not any(g.attn_slots(k).start <= v < g.attn_slots(k).start + 2 * g.n_heads
                           for k in range(g.n_layers))]
    assert torch.equal(fast[:, v_and_on], eap[:, v_and_on])  # values, MLPs, logits: EAP's
