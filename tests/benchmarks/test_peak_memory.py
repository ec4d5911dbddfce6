"""acdc_engine.resources: peak memory read and reset per device (CUDA faked on CPU)."""

from __future__ import annotations

import sys

import pytest
import torch

from acdc_engine import resources


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda's memory and sync calls recorded per device index, current device 1."""
    calls = []
    peaks = {0: 3 * 2**20, 1: 5 * 2**20, 2: 7 * 2**20}

    def record(name):
        return lambda i=None: calls.append((name, i))

    monkeypatch.setattr(torch.cuda, "synchronize", record("sync"))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", record("reset"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda i=None: peaks[i])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    return calls


def test_cuda_indices_resolve_every_form(fake_cuda):
    assert resources.cuda_indices(None) == []
    assert resources.cuda_indices("cpu") == []
    assert resources.cuda_indices("cuda") == [1]  # the current device, resolved now
    assert resources.cuda_indices(torch.device("cuda", 2)) == [2]
    # a device_map: module -> index / "cuda:N" / cpu / disk
    dmap = {"embed": 0, "h.0": "cuda:2", "h.1": 2, "lm_head": "cpu", "x": "disk", "y": "meta"}
    assert resources.cuda_indices(dmap) == [0, 2]
    assert resources.cuda_indices(["cuda:0", "cuda:0", "cuda:1"]) == [0, 1]


def test_reset_syncs_then_resets_each_device(fake_cuda):
    resources.reset_peak_memory({"a": 0, "b": "cuda:2", "c": "cpu"})
    assert fake_cuda == [("sync", 0), ("reset", 0), ("sync", 2), ("reset", 2)]


def test_bare_cuda_resets_and_reads_the_current_device(fake_cuda):
    resources.reset_peak_memory("cuda")
    assert fake_cuda == [("sync", 1), ("reset", 1)]
    assert resources.peak_memory_mb("cuda") == 5.0  # device 1's peak, not device 0's


def test_peak_is_summed_over_the_devices_of_a_model(fake_cuda):
    assert resources.peak_memory_mb("cuda:0") == 3.0
    assert resources.peak_memory_mb(["cuda:0", "cuda:2"]) == 10.0
    assert resources.peak_memory_mb({"h.0": 0, "h.1": 1, "h.2": 1}) == 8.0


def test_synchronize_waits_for_every_device(fake_cuda):
    resources.synchronize(["cuda:0", "cuda:2", "cpu"])
    resources.synchronize("cpu")
    assert fake_cuda == [("sync", 0), ("sync", 2)]


def test_cpu_never_touches_cuda(fake_cuda):
    resources.reset_peak_memory("cpu")
    assert resources.peak_memory_mb("cpu") > 0
    assert fake_cuda == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's")
def test_cpu_window_resets():
    resources.reset_peak_memory("cpu")
    before = resources.peak_memory_mb("cpu")
    x = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
    high = resources.peak_memory_mb("cpu")
    del x
    resources.reset_peak_memory("cpu")
    after = resources.peak_memory_mb("cpu")
    assert high - before > 48, (before, high)  # the 64 MiB tensor is seen
    assert high - after > 48, (high, after)  # and forgotten after the reset
