"""Resources: CPU threads and peak memory (CUDA or the process's resident set)."""

from __future__ import annotations

import os
import resource
import sys

__all__ = ["set_threads", "reset_peak_memory", "peak_memory_mb"]


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



def reset_peak_memory(device=None) -> None:
    """Start a new peak-memory window on a CUDA ``device`` (no-op on CPU)."""
    import torch

    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device=None) -> float:
    """Peak memory in MiB: ``torch.cuda.max_memory_allocated`` on a CUDA ``device``, else the
    process's maximum resident set size (for the whole process so far)."""
    import torch

    if device is not None and torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB else
