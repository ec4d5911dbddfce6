"""The gradient sink (EAP-IG's summed reader gradients), its q/k/v factor records, and the
huge-page buffers under it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from acdc_engine import buffers
from acdc_engine.patching import LAST, Context, GradSink, PatchPlan
from acdc_engine.patching import run
from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.scoring import attribute
from acdc_engine.tasks import prepare
from acdc_engine.testing import random_pairs
from acdc_engine.testing.numerics import assert_close_to_f64, float64


def test_a_lazy_sink_sums_each_group_over_runs():
    torch.manual_seed(0)
    runs = [[torch.randn(n, 2, 3, 4) for n in (3, 2, 1)] for _ in range(3)]
    sink = GradSink()
    for parts in runs:
        sink.add(0, tuple(parts[:2]))  # readers 0-4 as two parts
        sink.add(5, (parts[2],))  # reader 5 as one part
    # the same three additions in the same order: bit for bit
    assert torch.equal(sink.rows(slice(0, 5)), sum(torch.cat(r[:2]) for r in runs))
    assert torch.equal(sink.rows(slice(5, 6)), sum(r[2] for r in runs))
    assert sink.rows(slice(6, 9)) is None  # never reached: a zero sum, nothing held


def test_the_first_gradient_is_copied_not_kept():
    """A run's gradient buffer is reused by the next layer (patching.Workspace.buffer)."""
    g = torch.ones(2, 3)
    sink = GradSink()
    sink.add(0, (g,))
    g.fill_(7.0)
    assert sink.rows(slice(0, 2)).tolist() == [[1.0] * 3] * 2


def test_a_plain_tensor_is_added_to():
    t = torch.full((3, 2), 5.0)
    sink = GradSink(t)
    sink.add(0, (torch.ones(3, 2),))
    assert t.tolist() == [[6, 6]] * 3 and sink.rows(slice(0, 3)) is not None


def _sink_runs(lm, factors: bool, steps: int = 3, fuse: bool = True) -> tuple:
    """EAP-IG's runs on a few pairs into one sink: (sink, the graph)."""
    data = prepare("t", lm.tokenizer, random_pairs(4, seed=1))
    p = Problem.build(lm, data, registry().metric("logit_diff"), "corrupted", batch_size=4)
    batch, g, adapter = p.batches[0], lm.graph, lm.adapter
    sink = GradSink()
    sink.factors_ok = factors
    abl = p.ablated(0)
    with lm.frozen():
        for step in range(steps):
            mask = g.full_mask(1.0, dtype=lm.dtype, requires_grad=True)
            x = abl[0] + (step + 1) / steps * (torch.zeros_like(abl[0]) + 0.5)
            logits = run(adapter, batch.clean, PatchPlan(mask=mask, ablated=abl, embed=x), LAST,
                         Context(grad_sink=sink, fuse=fuse))
            logits.float().sum().backward()
    return sink, g


@pytest.mark.parametrize("name", ["gpt2", "llama", "qwen2"])  # layer norm; RMS norm; GQA
def test_factor_records_form_the_per_reader_sums(name, request):
    """Every reader group's summed gradient is the same whether the q/k/v readers were
    recorded as factors (formed once) or handed over one run at a time."""
    lm = request.getfixturevalue(name)
    got, g = _sink_runs(lm, factors=True)
    want, _ = _sink_runs(lm, factors=False)
    with float64(lm):
        ref, _ = _sink_runs(lm, factors=False)
    assert got.factors_ok and got._factors and not want._factors
    for layer in range(g.n_layers):
        cols = g.attn_slots(layer)
        a, b = got.rows(cols), want.rows(cols)
        assert a.shape == b.shape == (3 * g.n_heads, *b.shape[1:])
        # bound: 4x the per-reader sums' float32 error against float64 + 16 eps max|gradient|
        assert_close_to_f64(a, b, ref.rows(cols), factor=4, ulps=16)
        assert float(b[0].abs().max()) > 0 and not torch.allclose(b[0], b[1])


def test_a_family_without_the_shared_norm_keeps_the_per_reader_path(gpt2):
    sink, g = _sink_runs(gpt2, factors=True, steps=2, fuse=False)  # as a family that never
    # calls norm_project
    assert not sink.factors_ok and all(not r.used for r in sink._factors.values())
    assert sink.rows(g.attn_slots(0)).shape[0] == 3 * g.n_heads


def test_eap_ig_scores_with_and_without_factor_records(qwen2):
    data = prepare("t", qwen2.tokenizer, random_pairs(6, seed=4))
    p = Problem.build(qwen2, data, registry().metric("kl_div"), "mean", batch_size=3)
    got = attribute(p, "eap-ig", ig_steps=4, progress=False)
    want = attribute(p.with_context(fuse=False), "eap-ig", ig_steps=4, progress=False)
    with float64(qwen2):
        p64 = Problem.build(qwen2, data, registry().metric("kl_div"), "mean", batch_size=3)
        ref = attribute(p64.with_context(fuse=False), "eap-ig", ig_steps=4, progress=False)
    # bound: 4x the unfused float32 scores' error against float64 + 16 eps max|score|
    assert_close_to_f64(got, want, ref, factor=4, ulps=16)


def test_buffers_are_plain_uninitialized_tensors_of_the_shape_asked():
    small = buffers.empty((3, 4), dtype=torch.float64, device="cpu")
    big = buffers.empty((3, buffers.MIN_BYTES // 4), dtype=torch.float32, device="cpu")
    assert small.shape == (3, 4) and small.dtype == torch.float64
    assert big.shape == (3, buffers.MIN_BYTES // 4) and big.is_contiguous()
    big.fill_(2.0)
    assert float(big.sum()) == 2.0 * big.numel()


THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@pytest.mark.skipif(not THP.exists() or "[madvise]" not in THP.read_text(),
                    reason="needs Linux transparent huge pages in madvise mode")
def test_big_cpu_buffers_are_advised_huge_pages():
    """The kernel marks the buffer's mapping as huge-page eligible (THPeligible in smaps),
    which a plain torch.empty is not in madvise mode."""
    def eligible(t):
        ptr, inside = t.data_ptr() + t.numel() * 2, False  # the middle: inside the advice
        for line in Path("/proc/self/smaps").read_text().split("\n"):
            head = line.split(" ")[0]
            if "-" in head and all(c in "0123456789abcdef-" for c in head):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= ptr < hi
            elif line.startswith("THPeligible:") and inside:
                return int(line.split()[1])

    n = 8 * buffers.MIN_BYTES // 4
    assert eligible(buffers.empty((n,), dtype=torch.float32, device="cpu")) == 1
    assert eligible(torch.empty(n)) == 0
