"""Resources: CPU threads and peak memory (per CUDA device, or the process's resident set).

Peak memory has a window: :func:`reset_peak_memory` starts it, :func:`peak_memory_mb` reads the
peak since then. On CUDA the window is per device (``torch.cuda.reset_peak_memory_stats`` and
``max_memory_allocated`` each read one device), so both functions take the same device or list
of devices (a model placed across GPUs with a ``device_map`` has several) and the peak is the
sum over them. On CPU the window is the process's peak resident set (Linux ``VmHWM``, reset by
writing ``5`` to ``/proc/self/clear_refs``); where that cannot be reset or read, the peak is
the process's lifetime maximum (``ru_maxrss``).
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Iterable
from pathlib import Path

__all__ = ["set_threads", "reset_peak_memory", "peak_memory_mb", "cuda_indices", "synchronize"]

_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def set_threads(n: int | None) -> None:
    """Use ``n`` CPU threads for torch's kernels (None: leave torch's default). On a loaded
    machine fewer threads than cores is often much faster (no oversubscription)."""
    if n is None:
        return
    from .errors import AcdcError

    if int(n) < 1:
        raise AcdcError(f"threads must be at least 1, got {n}")
    import torch

    torch.set_num_threads(int(n))
    os.environ["OMP_NUM_THREADS"] = str(int(n))


def cuda_indices(device=None) -> list[int]:
    """The CUDA device indices named by ``device``: a device (``"cuda"``, ``"cuda:1"``,
    ``torch.device``, an int), or an iterable of them (the devices of a ``device_map``: its
    values); CPU, meta and disk entries are skipped, duplicates kept once. A bare ``"cuda"``
    is the current device, resolved here, so a reset and a later read name the same device
    even if the current device changes in between."""
    import torch

    if device is None:
        return []
    items = device.values() if isinstance(device, dict) else device
    if isinstance(items, (str, int, torch.device)) or not isinstance(items, Iterable):
        items = [items]
    out: list[int] = []
    for d in items:
        if isinstance(d, int):  # accelerate's device_map names GPUs by index
            idx = d
        else:
            if str(d) in ("disk", "meta"):
                continue
            dev = torch.device(d)
            if dev.type != "cuda":
                continue
            idx = dev.index if dev.index is not None else torch.cuda.current_device()
        if idx not in out:
            out.append(idx)
    return out


def synchronize(device=None) -> None:
    """Wait for the queued kernels on every CUDA device in ``device`` (see :func:`cuda_indices`);
    a no-op on CPU. Call it before reading a wall-clock timer: CUDA kernels run asynchronously,
    and ``torch.cuda.synchronize()`` without an argument waits for the current device only."""
    import torch

    for i in cuda_indices(device):
        torch.cuda.synchronize(i)


def reset_peak_memory(device=None) -> None:
    """Start a new peak-memory window: on every CUDA device in ``device`` (pending kernels
    first, so their allocations fall in the old window), or for the process's resident set."""
    import torch

    indices = cuda_indices(device)
    for i in indices:
        torch.cuda.synchronize(i)
        torch.cuda.reset_peak_memory_stats(i)
    if not indices:
        try:
            _CLEAR_REFS.write_text("5")  # Linux: VmHWM := the current resident set
        except OSError:
            pass


def peak_memory_mb(device=None) -> float:
    """Peak memory in MiB since :func:`reset_peak_memory`: the sum over the CUDA devices in
    ``device`` of ``torch.cuda.max_memory_allocated`` (tensors only, weights included), else
    the process's peak resident set (everything the process holds)."""
    import torch

    indices = cuda_indices(device)
    if indices:
        return sum(torch.cuda.max_memory_allocated(i) for i in indices) / 2**20
    hwm = _vm_hwm_kib()
    if hwm is not None:
        return hwm / 1024
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB else


def _vm_hwm_kib() -> int | None:
    """The process's peak resident set in KiB from /proc (Linux), or None."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None
