"""The model families of the field (Pythia/GPT-NeoX, Gemma 1-3, Phi-3, OPT, MoE, sliding-window
Mistral) pass the invariants of ARCHITECTURE.md on tiny random-weight models built from the real
transformers config classes, loaded by path through the real loading code (with its self-check).

Prompts are longer than every sliding window here (7 tokens, window 3), so the windows are
exercised, and each architectural feature is shown to matter: the adapter with the feature
switched off no longer reproduces the model.
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from acdc_engine.errors import UnsupportedModelError
from acdc_engine.graph import EdgeKind, Graph
from acdc_engine.patching import Ablation, PatchPlan, run, run_with_writers
from acdc_engine.testing.builders import random_pairs, save_hf
from acdc_engine.testing.numerics import assert_close_to_f64, f32_bound, float64, max_error

LENGTH = 7  # > every sliding window below
WINDOW = 3
LLAMA_NODES = ("model.layers.0.post_attention_layernorm", "model.layers.1.input_layernorm",
               "model.norm")
GEMMA2_NODES = ("model.layers.0.pre_feedforward_layernorm", "model.layers.1.input_layernorm",
                "model.norm")
NEOX_NODES = ("gpt_neox.layers.0.post_attention_layernorm", "gpt_neox.layers.1.input_layernorm",
              "gpt_neox.final_layer_norm")
OPT_NODES = ("model.decoder.layers.0.final_layer_norm",
             "model.decoder.layers.1.self_attn_layer_norm", "model.decoder.final_layer_norm")
SLIDING = ["sliding_attention", "full_attention"]

#: case -> (model_type, config overrides, family, modules whose input is (m0, heads of 1, logits))
CASES = {
    "pythia": ("gpt_neox", {}, "gpt_neox", NEOX_NODES),  # parallel, rotary on 1/4 of d_head
    "neox-sequential": ("gpt_neox", {"use_parallel_residual": False}, "gpt_neox", NEOX_NODES),
    "gemma": ("gemma", {}, "gemma", LLAMA_NODES),
    "gemma2": ("gemma2", {"sliding_window": WINDOW, "attn_logit_softcapping": 2.0,
                          "final_logit_softcapping": 5.0, "layer_types": SLIDING},
               "gemma", GEMMA2_NODES),
    "gemma3": ("gemma3_text", {"sliding_window": WINDOW, "layer_types": SLIDING}, "gemma",
               GEMMA2_NODES),
    "gemma3-multimodal": ("gemma3", {"sliding_window": WINDOW, "layer_types": SLIDING}, "gemma",
                          tuple(n.replace("model.", "model.language_model.", 1)
                                for n in GEMMA2_NODES[:2]) + ("model.language_model.norm",)),
    "phi3": ("phi3", {"sliding_window": WINDOW, "rope_parameters": {
        "rope_theta": 10000.0, "partial_rotary_factor": 0.5, "rope_type": "default"}},
        "phi3", LLAMA_NODES),
    "opt": ("opt", {}, "opt", OPT_NODES),
    "mixtral": ("mixtral", {"sliding_window": WINDOW}, "moe", LLAMA_NODES),
    "qwen2-moe": ("qwen2_moe", {}, "moe", LLAMA_NODES),
    "mistral-window": ("mistral", {"sliding_window": WINDOW}, "llama", LLAMA_NODES),
}

#: case -> adapter switches that must matter: (attribute, value that turns the feature off)
FEATURES = [
    ("pythia", "parallel", False),  # the MLP would read the heads of its own layer
    ("gemma2", "windows", [None, None]),
    ("gemma2", "attn_softcap", None),
    ("gemma2", "final_softcap", None),
    ("gemma2", "post_norms", False),
    ("gemma3", "layer_types", ["full_attention"] * 2),  # one rotary base for all layers
    ("phi3", "windows", [None, None]),
    ("mixtral", "windows", [None, None]),
    ("mistral-window", "windows", [None, None]),
]


@pytest.fixture(scope="module", params=list(CASES))
def case(request, tmp_path_factory):
    """(case name, saved path, loaded model), one per family configuration."""
    from acdc_engine import load_model

    model_type, cfg, _, _ = CASES[request.param]
    path = save_hf(tmp_path_factory.mktemp(request.param), model_type, seed=1, **cfg)
    return request.param, path, load_model(str(path), device="cpu")


def _load(name, tmp_path):
    from acdc_engine import load_model

    model_type, cfg, _, _ = CASES[name]
    return load_model(str(save_hf(tmp_path / name, model_type, seed=1, **cfg)), device="cpu")


def _ids(model, seed, batch=3, length=LENGTH):
    g = torch.Generator().manual_seed(seed)
    v = model.hf.config.get_text_config().vocab_size
    return (torch.randint(1, v, (batch, length), generator=g),
            torch.randint(1, v, (batch, length), generator=g))


def held(ours, own, model, own64, what=""):
    """``ours`` (the patched forward) against ``own`` (the model's own float32 computation of
    the same logits) and ``own64()``, that computation with the model in float64. Bound: 4x the
    model's own float32 error against float64 + 16 eps max|logit|."""
    with torch.no_grad(), float64(model):
        ref = own64()
    assert_close_to_f64(ours, own, ref, factor=4, ulps=16, what=what)


def _acts(model, ids):
    with torch.no_grad():
        return run_with_writers(model.adapter, ids)[1]


# ----- the invariants ------------------------------------------------------------------------
def test_loads_as_its_family_and_passes_the_conformance_kit(case):
    from acdc_engine.testing import check_model

    name, _, model = case
    assert model.family == CASES[name][2]
    check_model(model, length=LENGTH)  # multimodal configs: vocab from get_text_config()


def test_full_circuit_is_the_model(case):
    _, _, model = case
    clean, corrupted = _ids(model, 0)
    g = model.graph
    ref = model.reference_logits(clean)
    with torch.no_grad():
        plain = run(model.adapter, clean)
        full = run(model.adapter, clean, PatchPlan(mask=torch.ones(g.n_writers, g.n_readers),
                                                   ablated=_acts(model, corrupted)))
    held(plain, ref, model, lambda: model.reference_logits(clean), "plain run")
    held(full, ref, model, lambda: model.reference_logits(clean), "full circuit")


def test_empty_circuit_is_the_corrupted_run(case):
    _, _, model = case
    clean, corrupted = _ids(model, 1)
    g = model.graph
    with torch.no_grad():
        got = run(model.adapter, clean, PatchPlan(mask=torch.zeros(g.n_writers, g.n_readers),
                                                  ablated=_acts(model, corrupted)))
    held(got, model.reference_logits(corrupted), model,
         lambda: model.reference_logits(corrupted), "empty circuit")


def _nnsight_node_patch(model, clean, corrupted, module_path):
    def module(nn):
        obj = nn
        for part in module_path.split("."):
            obj = obj[int(part)] if part.isdigit() else getattr(obj, part)
        return obj

    with torch.no_grad():
        with model.nn.trace(corrupted):
            saved = module(model.nn).input.save()
        with model.nn.trace(clean):
            module(model.nn).input = saved
            logits = model.nn.output.logits.save()
    return logits


@pytest.mark.parametrize("target", [0, 1, 2], ids=["mlp0", "attn1", "logits"])
def test_cutting_a_node_equals_nnsight_node_patching(case, target):
    name, _, model = case
    g = model.graph
    nodes = [["m0"], [f"a1.{h}" for h in range(g.n_heads)], ["logits"]][target]
    mask = torch.ones(g.n_writers, g.n_readers)
    for node in nodes:
        n = g.node(node)
        kinds = (EdgeKind.Q, EdgeKind.K, EdgeKind.V) if n.kind.value == "attn" else (None,)
        for kind in kinds:
            mask[:, g.reader_slot(n, kind) if kind else g.reader_slot(n)] = 0
    clean, corrupted = _ids(model, 2)
    with torch.no_grad():
        got = run(model.adapter, clean, PatchPlan(mask=mask, ablated=_acts(model, corrupted)))
    module = CASES[name][3][target]
    want = _nnsight_node_patch(model, clean, corrupted, module)
    held(got, want, model, lambda: _nnsight_node_patch(model, clean, corrupted, module),
         f"cut {nodes[0]}")
    assert (got - model.reference_logits(clean)).abs().max() > 1e-3  # the patch did something


def test_eap_is_exact_to_first_order(case):
    """Shrink the corrupted run towards the clean one by eps: exact/eps -> EAP/eps (float64)."""
    from acdc_engine.testing import first_order_error

    _, _, model = case
    cfg = model.hf.config
    experts = getattr(cfg, "_experts_implementation", None)
    if experts is not None:  # grouped_mm (the MoE default) has no float64 kernel
        cfg._experts_implementation = "eager"
    model.hf.double()
    try:
        clean, corrupted = _ids(model, 3, batch=2, length=5)
        err, scale = first_order_error(model, clean, corrupted, eps=1e-4)
        assert scale > 1e-2
        # not a rounding bound (float64: ~1e-12): the neglected second-order term is O(eps)
        # = 1e-4 of the effect times the curvature; 1e-2 allows curvature up to 100
        assert err < 1e-2, f"relative first-order error {err:.2e}"
    finally:
        model.hf.float()
        if experts is not None:
            cfg._experts_implementation = experts


def test_eap_ig_with_factor_records_equals_the_per_reader_sums(case):
    """EAP-IG's q/k/v readers summed as factors (patching.reader_factors) give the scores of the
    per-reader path (Context(fuse=False): every reader's gradient summed as it is)."""
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.scoring import attribute
    from acdc_engine.tasks import prepare

    _, _, model = case
    data = prepare("t", model.tokenizer, random_pairs(4, length=LENGTH, seed=2))
    p = Problem.build(model, data, registry().metric("kl_div"), "corrupted", batch_size=4)
    got = attribute(p, "eap-ig", ig_steps=3, progress=False)
    want = attribute(p.with_context(fuse=False), "eap-ig", ig_steps=3, progress=False)
    with float64(model):
        p64 = Problem.build(model, data, registry().metric("kl_div"), "corrupted",
                            batch_size=4)
        ref = attribute(p64.with_context(fuse=False), "eap-ig", ig_steps=3, progress=False)
    assert float(want.abs().max()) > 0
    # bound: 4x the per-reader path's float32 error against its float64 run + 16 eps
    # max|score|
    assert_close_to_f64(got, want, ref, factor=4, ulps=16, what="factor records")


# ----- each feature matters ------------------------------------------------------------------
@pytest.mark.parametrize("name, attr, off", FEATURES, ids=[f"{c}-{a}" for c, a, _ in FEATURES])
def test_each_feature_matters(tmp_path, name, attr, off):
    """The adapter with one feature switched off no longer reproduces the model: the tests
    above would catch a family that ignored it."""
    model = _load(name, tmp_path)
    ids = _ids(model, 4)[0]
    ref = model.reference_logits(ids)
    with torch.no_grad(), float64(model):
        ref64 = model.reference_logits(ids)
    # the bound of the invariants above: 4x the model's own float32 error + 16 eps max|logit|
    bound = f32_bound(ref64, plain=ref, factor=4, ulps=16)
    a = model.adapter
    with torch.no_grad():
        assert max_error(run(a, ids), ref64) <= bound
        setattr(a, attr, off)
        a.__dict__.pop("graph", None)  # rebuilt: ``parallel`` shapes it
        a._key = None  # rotary tables are rebuilt
        got = run(a, ids)
    # off, the adapter is outside that bound: the invariants above would catch it
    assert max_error(got, ref64) > bound, f"{attr} made no difference"


def test_parallel_blocks_have_no_edge_from_heads_to_their_own_mlp(case):
    name, _, model = case
    g = model.graph
    parallel = name == "pythia"  # every other case is sequential
    assert g.parallel is parallel
    assert g.n_edges == Graph(g.n_layers, g.n_heads, parallel=parallel).n_edges
    names = {e.name for e in g.edges}
    assert ("a0.0->m0" in names) is (not parallel)
    assert "a0.0->m1" in names


# ----- refusals that say why -----------------------------------------------------------------
def test_post_norm_opt_is_refused_with_the_reason(tmp_path):
    from acdc_engine import load_model

    path = save_hf(tmp_path / "opt350", "opt", do_layer_norm_before=False)
    with pytest.raises(UnsupportedModelError, match="post-norm"):
        load_model(str(path), device="cpu")


def test_acdc_engine_is_refused_on_post_normed_heads_and_runs_elsewhere(tmp_path):
    """Gemma 2's heads share their layer's post-norm, so one head cannot be re-run alone: the
    fast ACDC engine says so. Families whose heads are separable give the reference's answer."""
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.scoring.acdc import AcdcConfig, PruneWarning, acdc, acdc_naive
    from acdc_engine.tasks import prepare

    metric = registry().metric("kl_div")
    for name in ("gemma2", "pythia", "mixtral"):
        model = _load(name, tmp_path)
        problem = Problem.build(model, prepare("r", model.tokenizer, random_pairs(4, length=5)),
                                metric, "corrupted", batch_size=4)
        cfg = AcdcConfig(0.01, progress=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PruneWarning)
            if name == "gemma2":
                with pytest.raises(UnsupportedModelError, match="post-attention RMSNorm"):
                    acdc(problem, cfg)
                continue
            ref, got = acdc_naive(problem, cfg), acdc(problem, cfg)
        assert got.decisions == ref.decisions and torch.equal(got.keep, ref.keep), name


# ----- the CLI on every family ---------------------------------------------------------------
def test_graph_and_discover_commands_run(case, tmp_path, capsys):
    from acdc_engine.cli import main

    name, path, model = case
    assert main(["graph", "--model", str(path)]) == 0
    assert f"(family {CASES[name][2]})" in capsys.readouterr().out
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(r) for r in random_pairs(6, length=LENGTH, seed=5)))
    out = tmp_path / "run"
    assert main(["discover", "--model", str(path), "--task", str(pairs), "--method", "eap",
                 "--edges", "8", "--no-track", "--no-render", "--no-progress",
                 "--device", "cpu", "--out", str(out)]) == 0
    circuit = json.loads((out / "circuit.json").read_text())
    assert 0 < len(circuit["edges"]) <= 8


# ----- a family added by a plugin gets the same checks ---------------------------------------
def test_a_plugin_family_is_self_checked_at_load_and_passes_the_kit(tmp_path):
    """A plugin's family is tried before the built-ins; a wrong one (sliding window ignored)
    is refused at load by the self-check, a right one passes ``check_model``."""
    from acdc_engine import load_model
    from acdc_engine.hookspecs import hookimpl
    from acdc_engine.models import ModelFamily
    from acdc_engine.plugins import register, unregister
    from acdc_engine.testing import check_model
    from acdc_builtins.phi3 import Phi3Adapter

    class NoWindow(Phi3Adapter):
        def _setup(self):
            super()._setup()
            self.windows = [None] * self.n_layers

    def plugin(adapter, name):
        class Plugin:
            @hookimpl
            def acdc_model_families(self):
                is_phi3 = lambda m: m.config.model_type == "phi3"  # noqa: E731
                return [ModelFamily(name, is_phi3, adapter)]
        return Plugin()

    path = save_hf(tmp_path / "phi3", "phi3", seed=1, sliding_window=WINDOW)
    # the self-check probe must be longer than the window to see it: 4 tokens, window 3
    for adapter, name in ((NoWindow, "phi3-nowindow"), (Phi3Adapter, "phi3-mine")):
        register(plugin(adapter, name), name=name)
        try:
            if adapter is NoWindow:
                with pytest.raises(UnsupportedModelError, match="does not reproduce"):
                    load_model(str(path), device="cpu")
            else:
                model = load_model(str(path), device="cpu")
                assert model.family == "phi3-mine"
                check_model(model, length=LENGTH)
        finally:
            unregister(name)


@pytest.mark.slow
def test_eap_ranks_edges_like_exact_patching(case):
    """On random prompts and a logit-difference metric, EAP and EAP-IG order edges like exact
    patching (Spearman on |score|; measured 0.68-0.96 for EAP, 0.54-0.93 for EAP-IG: tiny
    random models, not a trained circuit)."""
    from scipy.stats import spearmanr

    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.scoring import attribute, exact_scores
    from acdc_engine.tasks import prepare

    _, _, model = case
    data = prepare("t", model.tokenizer, random_pairs(16, length=LENGTH))
    problem = Problem.build(model, data, registry().metric("logit_diff"), Ablation("corrupted"), 8)
    exact = exact_scores(problem, progress=False).abs()
    eap = attribute(problem, "eap", progress=False).abs()
    ig = attribute(problem, "eap-ig", ig_steps=8, progress=False).abs()
    assert spearmanr(eap, exact).statistic > 0.6
    assert spearmanr(ig, exact).statistic > 0.5


def test_the_conformance_kit_derives_its_bounds_and_names_the_rule(llama, monkeypatch):
    """check_model holds each comparison to a bound from a float64 run (or to ``tol``), and a
    broken adapter gets a ConformanceError naming the rule, even under python -O."""
    from acdc_engine.testing import ConformanceError, check_model

    check_model(llama, tol=1e-4)  # the fixed relative bound, for a model without float64
    unembed = llama.adapter.unembed
    monkeypatch.setattr(llama.adapter, "unembed", lambda x: unembed(x) * (1 + 1e-5))
    with pytest.raises(ConformanceError, match="full circuit differs from the model's own "
                       r"logits: .* from the same computation in float64"):
        check_model(llama)
