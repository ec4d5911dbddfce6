"""Large CPU buffers backed by transparent huge pages.

A fresh CPU tensor costs a page fault per 4 KiB page at its first touch. For the engine's big
per-batch buffers (the patched forward's writer outputs, ``[n_writers, b, p, d]``, 100s of MB;
EAP-IG's gradient sink, ``[n_readers, b, p, d]``) those faults cost more than the work done in
them (the measured costs are in docs/benchmarks.md). :func:`empty` asks the kernel for 2 MiB
pages for such a tensor (``madvise(MADV_HUGEPAGE)`` on its untouched memory, before anything
writes it), which cuts the number of faults 512-fold.

It applies on Linux with transparent huge pages in ``madvise`` mode (in ``always`` mode the
kernel already does it; in ``never`` mode it cannot), to CPU tensors of at least
:data:`MIN_BYTES`; anything else is a plain ``torch.empty``. The values are uninitialized either
way, and nothing else changes: the memory is the process's, freed as usual.
"""

from __future__ import annotations

import ctypes
import sys
from functools import lru_cache
from pathlib import Path

import torch

__all__ = ["empty", "MIN_BYTES", "cpu_kernels"]

MIN_BYTES = 8 << 20
"""Smaller tensors are left to the allocator (its heap reuses their pages anyway)."""

_HUGE = 2 << 20  # the x86-64 and arm64 transparent huge page size
_MADV_HUGEPAGE = 14
_THP_MODE = Path("/sys/kernel/mm/transparent_hugepage/enabled")


@lru_cache(maxsize=1)
def _madvise():
    """libc's ``madvise`` when advising huge pages can help here, else None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        if "[madvise]" not in _THP_MODE.read_text():
            return None
        fn = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn


def cpu_kernels(t: torch.Tensor) -> bool:
    """Whether the engine's CPU-only variants apply to ``t``: huge pages (:func:`empty`), the
    readers' gradient sum as one matrix-vector product (``patching.reads``), the KL in blocks
    of rows (``acdc_builtins.kl``). Each has a plain torch path, the one CUDA tensors take; the
    one decision is here so that a test can force the CUDA path on CPU
    (``tests/gpu_path``) and check it gives the CPU path's result."""
    return t.device.type == "cpu"


def empty(shape, *, dtype: torch.dtype, device) -> torch.Tensor:
    """``torch.empty(shape, dtype=dtype, device=device)``, on huge pages where that helps."""
    out = torch.empty(shape, dtype=dtype, device=device)
    nbytes = out.numel() * out.element_size()
    advise = _madvise() if cpu_kernels(out) and nbytes >= MIN_BYTES else None
    if advise is not None:
        ptr = out.data_ptr()
        start, end = -(-ptr // _HUGE) * _HUGE, (ptr + nbytes) // _HUGE * _HUGE
        if end > start:
            advise(start, end - start, _MADV_HUGEPAGE)  # advice only: a failure changes nothing
    return out
