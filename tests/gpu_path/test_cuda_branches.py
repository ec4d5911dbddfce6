"""The CUDA branches of the engine, forced on CPU (issue 26 item 6): each gives the CPU branch's
result. No GPU has run this code; where the engine decides by device, the decision is one
predicate (``buffers.cpu_kernels``) that these tests turn off, so the plain torch path that CUDA
tensors take runs here on the same inputs: the big buffers as plain ``torch.empty`` (no huge
pages), the readers' gradient sum as ``t.sum(0)``, the KL over all rows at once. The workspace's
backward buffer and spare row are the same on every device (no branch since e7676de).

Tolerances: the forced path sums the same float32 values in another order (``t.sum(0)`` against
one matrix-vector product; the KL of all rows at once against blocks of rows). Each score is a
sum of at most ``n`` float32 terms, so the two orders differ by at most ``2 n eps32`` times the
sum of the terms' magnitudes (Higham's bound for recursive summation, for each order); with
``n`` <= 64 readers here that is under ``1e-5`` of the largest score's magnitude sum; we assert
``1e-5`` of the largest |score| (measured on tiny-ioi: the scores are identical).

The other CUDA-only lines (peak memory and synchronisation per device, a device map's window,
first_order_error's masks) are tested with ``torch.cuda`` faked in tests/benchmarks/
test_peak_memory.py and tests/api/test_peak_devices.py, and below for the benchmarks' memory
reading.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from acdc_engine import buffers
from acdc_engine.api.setup import build_problem, load_model
from acdc_engine.plugins import registry
from acdc_engine.scoring import attribute

EPS32 = torch.finfo(torch.float32).eps


@pytest.fixture(scope="module")
def problem():
    model = load_model("tiny-ioi", device="cpu")
    p, _ = build_problem(model, registry().task("ioi"), n_examples=16, batch_size=16)
    return p


@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_attribution_on_the_cuda_path_equals_the_cpu_path(problem, method, monkeypatch):
    cpu = attribute(problem, method, progress=False)
    asked = []

    def never(t):
        asked.append(t.device.type)
        return False

    monkeypatch.setattr(buffers, "cpu_kernels", never)
    forced = attribute(problem, method, progress=False)
    assert asked, "the forced branch is not on this path"
    ok = torch.isfinite(cpu)
    assert torch.equal(ok, torch.isfinite(forced))
    err = (cpu[ok] - forced[ok]).abs().max()
    assert err <= 1e-5 * cpu[ok].abs().max(), float(err)


def test_kl_on_the_cuda_path_equals_the_cpu_path(monkeypatch):
    """ACDC's KL: all rows at once (CUDA) against blocks of rows (CPU), both against float64."""
    from acdc_builtins.kl import _BLOCK, KlClean, kl_to_clean

    gen = torch.Generator().manual_seed(0)
    B, V = 6, _BLOCK // 2 + 7  # two rows per block on the CPU path: three blocks
    clean = KlClean(torch.randn(B, V, generator=gen) * 3)
    logits = torch.randn(3, B, V, generator=gen) * 3
    cpu = kl_to_clean(logits, clean)
    asked = []
    monkeypatch.setattr(buffers, "cpu_kernels", lambda t: asked.append(1) and False)
    forced = kl_to_clean(logits, clean)
    assert asked
    ref = (clean.q64 * (clean.logq.double() - logits.double().log_softmax(-1))).sum(-1)
    for out in (cpu, forced):
        assert (out.double() - ref).abs().max() <= 1e-6 * max(1.0, float(ref.abs().max()))
    assert (cpu - forced).abs().max() <= 1e-6 * max(1.0, float(ref.abs().max()))


def test_benchmarks_read_cuda_memory_on_their_device(monkeypatch):
    """benchmarks/_common.memory_now_mb on a CUDA device asks that device, not the current."""
    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    try:
        import _common
    finally:
        sys.path.pop(0)
    asked = []
    monkeypatch.setattr(torch.cuda, "memory_allocated",
                        lambda d=None: asked.append(d) or 3 * 2**20)
    assert _common.memory_now_mb("cuda:1") == 3.0
    assert asked == [torch.device("cuda", 1)]
    assert _common.memory_now_mb("cpu") > 0 and asked == [torch.device("cuda", 1)]
