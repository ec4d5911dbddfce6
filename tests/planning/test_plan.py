"""``acdc plan`` (issue 26 item 4): the predicted peak memory against measured peaks, the
largest batch, the advice, and the one-line refusals."""

from __future__ import annotations

import pytest

from acdc_engine.cli import main
from acdc_engine.errors import AcdcError
from acdc_engine.planning import Hardware, memory_bytes, model_shape, plan
from acdc_engine.planning.calibration import fit, load_points, predicted_mb, shapes_of
from acdc_engine.planning.costs import ACDC_BUDGET_MB, MEMORY, UNMODELLED
from acdc_engine.planning.measure import measure

TOLERANCE = 0.25  # the issue's: prediction within 25% of the measured peak


@pytest.fixture(scope="module")
def measured():
    data = load_points()
    return data, shapes_of(data["configs"])


def test_every_measured_point_within_25_percent(measured):
    data, shapes = measured
    assert len(data["points"]) >= 20 and len({p["model"] for p in data["points"]}) >= 4
    for p in data["points"]:
        pred = predicted_mb(p, shapes[p["model"]])
        if p["method"] in UNMODELLED:  # bounds: the sizes, and the sizes + ACDC's budget
            assert pred - ACDC_BUDGET_MB <= p["peak_mb"] <= pred, (p, pred)
        else:
            assert abs(pred - p["peak_mb"]) <= TOLERANCE * p["peak_mb"], (p, pred)


def test_shipped_coefficients_are_the_fit_of_the_points(measured):
    data, shapes = measured
    for method, (a, c, _) in fit(data["points"], shapes).items():
        assert MEMORY[method][:2] == pytest.approx((a, c), rel=1e-3, abs=1e-3), method


def test_a_fresh_measurement_is_predicted_within_25_percent():
    """Measured now, in a fresh process, on the shipped tiny-ioi (EAP, 64 examples x 32 tokens
    in batches of 32): the plan's peak is within 25%."""
    got = measure("tiny-ioi", "eap", examples=64, batch=32, pos=32)
    pred = plan("tiny-ioi", examples=64, seq_len=32, method="eap", batch_size=32).peak_bytes
    assert abs(pred / 2**20 - got["peak_mb"]) <= TOLERANCE * got["peak_mb"], (got, pred / 2**20)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["eap-ig", "edge-pruning"])
def test_fresh_measurements_of_other_methods(tmp_path, method):
    from acdc_engine.testing import save_hf
    from acdc_engine.testing.builders import TinyShape

    path = save_hf(tmp_path / "llama", "llama", shape=TinyShape(n_layer=3, n_head=8, n_kv=2,
                                                                d=128))
    got = measure(str(path), method, examples=32, batch=16, pos=32)
    pred = plan(str(path), examples=32, seq_len=32, method=method, batch_size=16).peak_bytes
    assert abs(pred / 2**20 - got["peak_mb"]) <= TOLERANCE * got["peak_mb"], (got, pred / 2**20)


def test_the_shape_is_the_adapters_graph_from_the_config_alone():
    s = model_shape("tiny-ioi")
    assert (s.graph.n_layers, s.graph.n_heads, s.d_model, s.vocab) == (4, 4, 64, 65)
    assert (s.n_writers, s.n_readers, s.n_edges) == (21, 53, 479)
    assert s.params == 206272  # tied embeddings counted once


def _big(tmp_path, layers=80, d=8192):
    from transformers import AutoConfig

    cfg = AutoConfig.for_model("llama", num_hidden_layers=layers, hidden_size=d,
                               num_attention_heads=64, num_key_value_heads=8,
                               intermediate_size=28672, vocab_size=32000)
    cfg.save_pretrained(tmp_path / "big")
    return str(tmp_path / "big")


def test_a_70b_config_needs_a_device_map(tmp_path):
    """Llama-2-70B's shape from its config alone (nothing allocated): 138 GB of bfloat16
    weights do not fit one 80 GB device."""
    p = plan(_big(tmp_path), examples=100, seq_len=128, method="eap",
             hardware=Hardware("cuda", "bfloat16", memory_gib=80))
    assert p.memory["weights"] == pytest.approx(2 * 68.98e9, rel=0.01)
    assert not p.fits and p.max_batch == 0
    assert any("device map over at least 2 devices" in a for a in p.advice)


def test_largest_batch_is_the_largest_that_fits():
    p = plan("tiny-ioi", examples=1000, seq_len=32, method="eap",
             hardware=Hardware(memory_gib=1.0))
    c = p.costs
    at = lambda b: sum(memory_bytes(c, b).values())  # noqa: E731
    assert 1 <= p.max_batch < c.examples
    assert at(p.max_batch) <= p.capacity < at(p.max_batch + 1)


def test_many_examples_need_ranks():
    """The corrupted activations of every example stay cached: 10M examples exceed the device
    beside the weights; ranks (each caching its share) or fewer examples are the way out."""
    p = plan("tiny-ioi", examples=10_000_000, seq_len=32, method="eap",
             hardware=Hardware(memory_gib=4.0))
    assert p.max_batch == 0
    assert any("ranks" in a for a in p.advice), p.advice


def test_cli_prints_the_plan(capsys):
    assert main(["plan", "--model", "tiny-ioi", "--examples", "64", "--seq-len", "32",
                 "--method", "eap-ig", "--dtype", "bfloat16", "--device", "cuda"]) == 0
    out = capsys.readouterr().out
    for what in ("peak memory per device", "largest batch that fits", "time:", "advice:",
                 "479 edges", "bfloat16 on cuda"):
        assert what in out


@pytest.mark.parametrize("argv, message", [
    (["--model", "/no/such/model", "--examples", "8", "--seq-len", "8"], "does not exist"),
    (["--model", "tiny-ioi", "--examples", "0", "--seq-len", "8"], "examples must be"),
    (["--model", "tiny-ioi", "--examples", "8", "--seq-len", "-1"], "seq-len must be"),
    (["--model", "tiny-ioi", "--examples", "8", "--seq-len", "8", "--method", "nope"],
     "unknown method 'nope'"),
    (["--model", "tiny-ioi", "--examples", "8", "--seq-len", "8", "--dtype", "int8"],
     "unknown dtype"),
])
def test_bad_input_is_one_line(argv, message, capsys):
    assert main(["plan", *argv]) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_python_refusals():
    with pytest.raises(AcdcError, match="memory must be"):
        plan("tiny-ioi", examples=8, seq_len=8, hardware=Hardware(memory_gib=0))


#: benchmarks/scaling.py's EAP points (docs/benchmarks.md, Scaling, 2026-12-01, CPU):
#: shape, batch, positions, weights MiB, EAP's extra MiB (one batch, so one batch cached)
SCALING = [("gpt2-small", 8, 32, 475, 481), ("gpt2-small", 2, 128, 475, 480),
           ("gpt2-medium", 4, 32, 1354, 737), ("gpt2-large", 2, 32, 2953, 796),
           ("llama-1b", 2, 32, 4714, 748)]
CONFIGS = {"gpt2-small": ("gpt2", dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257)),
           "gpt2-medium": ("gpt2", dict(n_layer=24, n_head=16, n_embd=1024, vocab_size=50257)),
           "gpt2-large": ("gpt2", dict(n_layer=36, n_head=20, n_embd=1280, vocab_size=50257)),
           "llama-1b": ("llama", dict(num_hidden_layers=16, num_attention_heads=32,
                                      num_key_value_heads=8, hidden_size=2048,
                                      intermediate_size=8192, vocab_size=128256,
                                      tie_word_embeddings=True))}


def test_the_scaling_benchmarks_peaks_out_of_sample(tmp_path):
    """Shapes up to 1.24B parameters, measured by another script, none in the fit: the peak
    within 25% (it is within 2%), the working memory alone within 25% (within 15%)."""
    from transformers import AutoConfig

    for name, (kind, kw) in CONFIGS.items():
        AutoConfig.for_model(kind, **kw).save_pretrained(tmp_path / name)
    for name, b, p, weights, extra in SCALING:
        got = plan(str(tmp_path / name), examples=b, seq_len=p, batch_size=b)
        w = got.memory["weights"] / 2**20
        assert w == pytest.approx(weights, rel=0.01)
        peak = got.peak_bytes / 2**20
        assert abs(peak - (weights + extra)) <= TOLERANCE * (weights + extra), (name, peak)
        assert abs(peak - w - extra) <= TOLERANCE * extra, (name, peak - w, extra)


@pytest.mark.parametrize("model_type", ["gpt_neox", "gemma2", "qwen2", "mixtral"])
def test_the_two_layer_shortcut_equals_the_whole_model(tmp_path, model_type):
    """A 6-layer config: the graph and parameter count from the 1- and 2-layer builds equal
    those of the whole model built on the meta device (parallel blocks, sliding-window layer
    lists, experts)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from acdc_engine.plugins import registry
    from acdc_engine.testing.builders import hf_shape

    AutoConfig.for_model(model_type, **hf_shape(model_type, 6, 4, 2, 32)).save_pretrained(
        tmp_path / "m")
    s = model_shape(str(tmp_path / "m"))
    with torch.device("meta"):
        hf = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tmp_path / "m"))
    hf.tie_weights()
    family = next(f for f in registry().families.values() if f.matches(hf))
    assert s.graph == family.adapter(hf).graph
    assert s.params == sum(p.numel() for p in hf.parameters())
