"""MLP-neuron-group ablation: the adapters' hook point and acdc_engine.evidence.neurons.

The reference numbers are hand-made: a forward pre-hook on the Hugging Face model's own MLP
output projection that changes the neurons, and a node ablation of the MLP whose replacement
output is computed by hand.
"""

from __future__ import annotations

import pytest
import torch

from acdc_engine.errors import AcdcError, UnsupportedModelError
from acdc_engine.evidence.neurons import (
    hidden_run,
    neuron_ablation,
    neuron_direct_effects,
    neuron_sources,
    parse_group,
)
from acdc_engine.models import ModelAdapter
from acdc_engine.patching import LAST, NO_PATCH, PatchPlan, run, run_with_writers


def _hf_out_proj(model, layer):
    """The output projection inside the HF model itself (not through the adapter)."""
    hf = model.hf
    if hasattr(hf, "transformer"):  # GPT-2
        return hf.transformer.h[layer].mlp.c_proj
    return hf.model.layers[layer].mlp.down_proj


def _hand_effect(problem, layer, idx, source="zero"):
    """Mean metric change when the HF model's own forward has neurons ``idx`` of ``layer``
    replaced by a pre-hook (zero, or the corrupted run's hidden activation)."""
    mod = _hf_out_proj(problem.model, layer)
    total, n = 0.0, 0
    for batch in problem.batches:
        src = None
        if source == "corrupted":
            seen = []
            h = mod.register_forward_pre_hook(lambda m, a, seen=seen: seen.append(a[0].detach()))
            with torch.no_grad():
                problem.model.hf(batch.corrupted)
            h.remove()
            src = seen[0]

        def hook(m, args, src=src):
            x = args[0].clone()
            x[..., idx] = 0 if src is None else src[..., idx]
            return (x, *args[1:])

        with torch.no_grad():
            full = problem.model.hf(batch.clean).logits[:, -1:]
            handle = mod.register_forward_pre_hook(hook)
            try:
                abl = problem.model.hf(batch.clean).logits[:, -1:]
            finally:
                handle.remove()
        total += float((problem.metric.score(abl, batch) - problem.metric.score(full, batch)).sum())
        n += len(batch)
    return total / n


@pytest.fixture(scope="module")
def gpt2_prob(gpt2, make_problem):
    return make_problem(gpt2, n=8, batch_size=4)


@pytest.fixture(scope="module")
def llama_prob(llama, make_problem):
    return make_problem(llama, n=8, batch_size=4)


@pytest.fixture(params=["gpt2_prob", "llama_prob"])
def prob(request):
    return request.getfixturevalue(request.param)


def test_ablating_the_empty_group_changes_nothing_exactly(prob):
    res = neuron_ablation(prob, 1, [[]], source="corrupted", n_boot=50)
    e = res.effects[0]
    assert (e.point, e.low, e.high) == (0.0, 0.0, 0.0)
    assert res.indices == [[]]


def test_all_neurons_from_zero_is_the_mlp_replaced_by_its_output_bias(prob):
    """Node ablation of m1 whose replacement is W_out's bias alone, computed by hand."""
    layer = 1
    res = neuron_ablation(prob, layer, ["all"], source="zero", n_boot=50)
    model, g = prob.model, prob.graph
    w = g.writer_index(f"m{layer}")
    bias = _hf_out_proj(model, layer).bias
    if bias is None:  # Llama: no bias, the MLP writes zero
        bias = torch.zeros(model.adapter.d_model)
    mask = torch.ones(g.n_writers, g.n_readers)
    mask[w, g.valid[w]] = 0
    total, n = 0.0, 0
    for batch in prob.batches:
        with torch.no_grad():
            _, acts = run_with_writers(model.adapter, batch.clean)
            abl = acts.clone()
            abl[w] = bias.detach().expand_as(acts[w])
            patched = run(model.adapter, batch.clean, PatchPlan(mask=mask, ablated=abl), LAST)
            full = run(model.adapter, batch.clean, NO_PATCH, LAST)
        total += float((prob.metric.score(patched, batch) - prob.metric.score(full, batch)).sum())
        n += len(batch)
    assert res.effects[0].point == pytest.approx(total / n, abs=1e-5)
    assert res.mlp_effect.point == pytest.approx(total / n, abs=1e-5)
    assert res.of_mlp[0] == pytest.approx(1.0)
    assert abs(total / n) > 1e-3  # the comparison means something


@pytest.mark.parametrize("source", ["zero", "corrupted"])
def test_group_effect_equals_a_hook_on_the_hf_model_itself(prob, source):
    idx = [0, 3, 5, 9, 17]
    res = neuron_ablation(prob, 0, [idx, "2:12"], source=source, n_boot=50)
    want = _hand_effect(prob, 0, idx, source)
    assert res.effects[0].point == pytest.approx(want, abs=1e-5)
    assert abs(want) > 1e-4
    assert res.effects[1].point == pytest.approx(_hand_effect(prob, 0, list(range(2, 12)),
                                                              source), abs=1e-5)
    assert res.effects[0].low <= res.effects[0].point <= res.effects[0].high


def test_mean_source_is_the_per_position_mean_of_the_corrupted_hidden(gpt2_prob):
    layer = 1
    hs = neuron_sources(gpt2_prob, layer, "corrupted")
    means = neuron_sources(gpt2_prob, layer, "mean")
    allh = torch.cat(hs)  # every prompt has the same length here
    assert len({h.shape[1] for h in hs}) == 1
    torch.testing.assert_close(means[0][0], allh.mean(0), atol=1e-6, rtol=0)


def test_hidden_run_reads_what_the_mlp_output_is_made_of(family_model):
    """The hook point: mlp_from_hidden(hidden) is the MLP node's output, on every family."""
    ids = torch.tensor([[1, 5, 9, 2, 7, 3]])
    a = family_model.adapter
    if family_model.graph.attn_only:
        pytest.skip("attention-only")
    acts, h = hidden_run(a, 0, ids)
    w = family_model.graph.writer_index("m0")
    torch.testing.assert_close(a.mlp_from_hidden(0, h), acts[w], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("model_type", ["gpt_neox", "opt", "phi3", "gemma2"])
def test_hook_point_on_the_other_builtin_families(tmp_path, model_type):
    from acdc_engine import load_model
    from acdc_engine.testing.builders import save_hf

    lm = load_model(str(save_hf(tmp_path / model_type, model_type)), device="cpu")
    acts, h = hidden_run(lm.adapter, 1, torch.tensor([[1, 5, 9, 2, 7]]))
    w = lm.graph.writer_index("m1")
    torch.testing.assert_close(lm.adapter.mlp_from_hidden(1, h), acts[w], atol=1e-5, rtol=1e-4)
    assert h.shape[-1] == 64  # intermediate_size = 2 d


def test_adapters_without_the_hook_point_refuse_clearly():
    from acdc_builtins.moe import MoEAdapter

    with pytest.raises(UnsupportedModelError, match="output projection"):
        ModelAdapter(torch.nn.Linear(1, 1)).mlp_out_proj(0)
    with pytest.raises(UnsupportedModelError, match="mixture-of-experts"):
        MoEAdapter.mlp_out_proj(object.__new__(MoEAdapter), 0)


def test_groups_parse_and_refuse():
    direct = torch.tensor([0.1, -3.0, 0.5, 2.0, 0.0])
    assert parse_group("top:2", 5, direct) == ("top:2", [1, 3])
    assert parse_group("1:3", 5) == ("1:3", [1, 2])
    assert parse_group("4,0,-1", 5) == ("4,0,-1", [0, 4])
    assert parse_group(slice(None, 2), 5) == ("0:2", [0, 1])
    assert parse_group(range(3, 5), 5)[1] == [3, 4]
    assert parse_group("all", 5)[1] == [0, 1, 2, 3, 4]
    for bad in ("7", "x", "top:9"):
        with pytest.raises(AcdcError):
            parse_group(bad, 5, direct)


@pytest.mark.parametrize("spec, message", [
    ("5:2", "group '5:2' selects no neurons: a slice START:STOP takes START up to, not "
            "including, STOP"),
    ("-1:-3", "group '-1:-3' selects no neurons"),
    ("", "group '' is empty: give indices"),
    (",", "group ',' is empty"),
    ("top:0", r"group 'top:0': k must be in 1..5"),
    ("0:99", "group '0:99': 99 is outside an MLP of 5 neurons"),
])
def test_groups_that_select_no_neuron_are_refused(spec, message):
    """Before: '5:2' and '' became empty groups reported with effect +0."""
    with pytest.raises(AcdcError, match=message):
        parse_group(spec, 5, torch.zeros(5))
    assert parse_group([], 5) == ("", [])  # an explicit empty list: the no-op check


def test_a_bad_group_is_refused_before_any_work(gpt2_prob, monkeypatch):
    import acdc_engine.evidence.neurons as nm

    monkeypatch.setattr(nm, "neuron_sources", lambda *a: pytest.fail("work started"))
    with pytest.raises(AcdcError, match="group '5:2' selects no neurons"):
        neuron_ablation(gpt2_prob, 0, ["top:2", "5:2"])


def test_top_k_groups_take_the_largest_direct_effects(tracr, make_problem):
    """On tracr (no final norm) with logit difference, the metric is linear in the final
    residual, so a neuron's direct effect is exact: the sum over all neurons equals patching
    the edge m1->logits alone with every neuron zeroed."""
    prob = make_problem(tracr, n=8, batch_size=4)
    layer = 1
    d = neuron_direct_effects(prob, layer, "zero")
    res = neuron_ablation(prob, layer, ["top:3"], source="zero", n_boot=50)
    assert res.indices[0] == sorted(d.abs().argsort(descending=True)[:3].tolist())
    g, a = prob.graph, prob.model.adapter
    w = g.writer_index(f"m{layer}")
    mask = torch.ones(g.n_writers, g.n_readers)
    mask[w, g.logits_slot] = 0
    total = 0.0
    for batch in prob.batches:
        with torch.no_grad():
            acts, h = hidden_run(a, layer, batch.clean)
            abl = acts.clone()
            abl[w] = a.mlp_from_hidden(layer, torch.zeros_like(h))
            patched = run(a, batch.clean, PatchPlan(mask=mask, ablated=abl), LAST)
            full = run(a, batch.clean, NO_PATCH, LAST)
        total += float((prob.metric.score(patched, batch) - prob.metric.score(full, batch)).sum())
    assert float(d.sum()) == pytest.approx(total / prob.n_examples, rel=1e-4, abs=1e-5)


def test_refuses_bad_layers_and_sources(gpt2_prob):
    with pytest.raises(AcdcError, match="layer 5"):
        neuron_ablation(gpt2_prob, 5, ["all"])
    with pytest.raises(AcdcError, match="source"):
        neuron_ablation(gpt2_prob, 0, ["all"], source="clean")


def test_shipped_tiny_ioi_neuron_groups():
    """On the shipped model: the empty group is exact, the nested top-k groups carry a growing
    share of the MLP's effect, and the hand hook agrees."""
    from acdc_engine.api.setup import build_problem, load_model, load_task

    task = load_task("ioi")
    prob = build_problem(load_model("tiny-ioi", device="cpu"), task, n_examples=16)[0]
    res = neuron_ablation(prob, 1, [[], "top:4", "top:64"], source="zero", n_boot=100)
    assert res.effects[0].point == 0.0
    assert res.d_mlp == 256
    assert res.effects[1].point == pytest.approx(_hand_effect(prob, 1, res.indices[1]),
                                                 abs=1e-4)
    assert res.mlp_effect.point == pytest.approx(_hand_effect(prob, 1, list(range(256))),
                                                 abs=1e-4)


@pytest.mark.slow
def test_cli_neurons_writes_json_and_png(tmp_path, capsys):
    import json

    from acdc_engine.cli import main

    out = tmp_path / "neurons"
    rc = main(["neurons", "--layer", "1", "--groups", "top:4", "0:8", "--examples", "8",
               "--boot", "50", "--threads", "1", "--out", str(out)])
    assert rc == 0
    res = json.loads((out / "neurons.json").read_text())
    assert res["groups"] == ["top:4", "0:8"] and res["d_mlp"] == 256
    assert res["indices"][1] == list(range(8)) and len(res["indices"][0]) == 4
    assert (out / "neurons.png").stat().st_size > 1000
    text = capsys.readouterr().out
    assert "top:4" in text and "all" in text
    assert main(["neurons", "--layer", "9", "--examples", "4"]) == 2  # a clear one-line error
