"""benchmarks/scaling.py's cost model and benchmarks/_common.py's shapes and timer."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="module")
def scaling(bench_dir):
    import scaling

    return scaling


def test_shapes_have_the_real_models_counts(scaling):
    s = scaling.SHAPES
    # GPT-2 small: 124.4M with biases and norms; the 32,491 edges of the architecture brief
    assert s["gpt2-small"].params == pytest.approx(124.4e6, rel=2e-3)
    assert scaling.features(s["gpt2-small"], 1, 1, 4)["n_edges"] == 32491
    assert s["gpt2-medium"].params == pytest.approx(354.8e6, rel=3e-3)
    assert s["gpt2-large"].params == pytest.approx(774.0e6, rel=3e-3)
    assert s["llama-1b"].params == pytest.approx(1.2358e9, rel=1e-3)  # Llama-3.2-1B


def test_features_scale_with_batch_and_positions(scaling):
    s = scaling.SHAPES["gpt2-small"]
    f1, f2 = scaling.features(s, 2, 32, 4), scaling.features(s, 4, 32, 2)
    assert f2["f_edges"] == 2 * f1["f_edges"] == 2 * 2 * 32491 * 2 * 32 * 768
    assert f2["u_eap"] == f1["u_eap"] == (157 + 445) * 2 * 32 * 768 * 4  # bytes halve in bf16
    # the forward: 2 FLOPs per weight per token, attention p^2, last-position logits
    blocks = 12 * (4 * 768**2 + 2 * 768 * 3072)
    assert f1["f_model"] == 2 * 64 * blocks + 2 * 2 * 12 * 32**2 * 768 + 2 * 2 * 768 * 50257


def test_fit_recovers_known_coefficients(scaling):
    rows = [{"t": 3e-9 * a + 5e-10 * b, "a": a, "b": b}
            for a, b in [(1e9, 2e8), (4e9, 1e9), (2e9, 8e9), (9e9, 3e8)]]
    coef, err = scaling.fit(rows, "t", ["a", "b"])
    assert coef == pytest.approx([3e-9, 5e-10], rel=1e-6)
    assert max(abs(e) for e in err) < 1e-6
    rows[0]["t"] = 0.0  # an unmeasurable point is left out, not divided by
    coef, err = scaling.fit(rows, "t", ["a", "b"])
    assert err[0] is None and coef == pytest.approx([3e-9, 5e-10], rel=1e-6)


def test_timed_reads_time_and_memory_per_call(bench_dir):
    from _common import timed

    calls = []

    def work():
        calls.append(1)
        torch.ones(32 * 2**20 // 4).add_(1)  # 32 MiB touched

    t = timed(work, torch.device("cpu"), repeats=3)
    assert len(calls) == 4  # one warm-up, three timed
    assert 0 < t.seconds < 5 and 0 < t.cpu_seconds < 5
    assert t.peak_mb >= t.base_mb > 0
    assert t.extra_mb > 24  # the tensor, seen in each call's own window


@pytest.mark.slow  # the first model load of the session imports nnsight and the families
def test_random_model_is_adapted_in_memory(bench_dir):
    from _common import Shape, build_model, load_in_memory, random_batch

    shape = Shape("t", "llama", 2, 4, 32, 64, 97, kv_heads=2)
    lm = load_in_memory(build_model(shape, n_pos=64, dtype="bfloat16"), "cpu", "bfloat16")
    assert lm.family == "llama" and lm.dtype == torch.bfloat16
    assert lm.hf.get_output_embeddings().weight is lm.hf.get_input_embeddings().weight  # tied
    assert sum(p.numel() for p in lm.hf.parameters()) == shape.params + 2 * 2 * 32 + 32
    b = random_batch(97, 3, 5, lm.device)
    assert b.clean.shape == (3, 5) and b.answer.shape == (3,) and int(b.clean.max()) < 97


def test_gqa_weight_copies_are_a_fixed_term(scaling):
    s = scaling.SHAPES
    assert scaling.features(s["gpt2-small"], 2, 32, 4)["w_gqa"] == 0  # no grouped-query
    f = scaling.features(s["llama-1b"], 2, 32, 4)
    assert f["w_gqa"] == scaling.features(s["llama-1b"], 8, 64, 4)["w_gqa"]
    assert f["w_gqa"] == 2 * 16 * 2048 * 2048 * 4  # a k and a v copy per layer, float32


def test_projection_follows_the_fits(scaling):
    fits = {"time_baseline": {"coef": [1e-10]}, "time_eap": {"coef": [3e-10, 5e-11]},
            "memory_eap": {"coef": [1.0, 0.0]}, "memory_eap[llama]": {"coef": [0.5, 1.0]}}
    rows = {(r["model"], r["dtype"], r["gpus"]): r for r in scaling.project(fits)}
    r = rows["llama-2-7b", "bfloat16", "1x H100"]
    t7 = scaling.TARGETS["llama-2-7b"]
    per_token = 0.5 * (1057 + 3105) * 4096 * 2  # the llama coefficient, bfloat16
    masks = 2 * 1057 * 3105 * 4
    expected = (0.9 * 80 * 2**30 - t7.params * 2 - masks) / per_token  # no GQA in Llama-2-7B
    assert r["max_tokens"] == int(expected) and r["batch"] == int(expected) // 128
    assert r["edges"] == 1592881 and r["gqa_copies_gib"] == 0
    f = scaling.features(t7, r["batch"], 128, 2)
    assert r["seconds_per_batch"] == pytest.approx(
        (3 * 2 * f["f_model"] + f["f_edges"]) / scaling.RATES["bfloat16"])
    # several GPUs: never more than all of them together, limited by the first one
    big = rows["llama-2-70b", "bfloat16", "8x H100"]
    assert 0 < big["max_tokens"] < big["max_tokens_spread"]
    assert rows["llama-2-70b", "bfloat16", "1x H100"]["max_tokens"] == 0  # 128 GiB of weights
    assert rows["mistral-7b", "float32", "1x H100"]["gqa_copies_gib"] == pytest.approx(
        2 * 32 * 4096**2 * 4 / 2**30)
