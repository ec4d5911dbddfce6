"""Measuring what the plan predicts: one method's peak memory and time on a real model.

    python -m acdc_engine.planning.measure --model tiny-ioi --method eap --examples 64 \\
        --batch 32 --pos 16                       # one JSON line: peak MiB, weights, seconds

What is measured is the scoring stage of a discovery (the method's run over a
:class:`~acdc_engine.problem.Problem` of ``examples`` random token sequences of ``pos`` tokens
in batches of ``batch``, corrupted ablation, its activations cached as ``acdc discover``
caches them), which is where a run's peak memory is: the evaluation after it is forward
passes over the same batches. The peak is the one :mod:`acdc_engine.resources` reads: on CUDA
``max_memory_allocated`` (tensors, weights included); on CPU the process's peak resident set
in a window opened after loading and a warm-up run on two examples, minus the resident set
when it opened, plus the weights: the same quantity (tensors, weights included), without
the process's libraries.

On CPU the measurement runs in a fresh process with ``MALLOC_MMAP_THRESHOLD_`` fixed
(:func:`measure`), since glibc otherwise keeps freed tensors resident and a window would see
earlier runs' pages.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["measure", "measure_here", "TASK_SETTINGS"]

TASK_SETTINGS = {"acdc": {"prune_metric": "task"}, "acdc-guided": {"prune_metric": "task"},
                 "edge-pruning": {"loss_metric": "task", "steps": 4},
                 "ugs": {"loss_metric": "task", "steps": 4}}
"""Settings the measurement gives a method: random tokens have no clean logits to take a KL
against, so the pruning and loss metrics are the task's (logit difference); the mask
optimizations run 4 steps (the memory of a step does not depend on their number)."""

_MMAP_THRESHOLD = str(128 * 1024)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _batches(vocab: int, examples: int, batch: int, pos: int, device, seed: int = 0):
    import torch

    from ..tasks import Batch

    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, examples, batch):
        b = min(batch, examples - start)
        ids = lambda *s: torch.randint(3, vocab, s, generator=gen).to(device)  # noqa: E731
        out.append(Batch(clean=ids(b, pos), corrupted=ids(b, pos), answers=ids(b)[:, None],
                         wrongs=ids(b)[:, None], rows=list(range(start, start + b))))
    return out


def measure_here(model: str, method: str, examples: int, batch: int, pos: int,
                 device: str = "cpu", dtype: str = "float32") -> dict:
    """Measure in this process (see the module docstring): a dict with ``peak_mb`` (weights
    included), ``weights_mb``, ``extra_mb`` and ``seconds`` (the method's run)."""
    import torch

    from ..api.setup import load_model
    from ..patching import Ablation
    from ..plugins import registry
    from ..problem import Problem
    from ..resources import peak_memory_mb, reset_peak_memory, synchronize

    lm = load_model(model, device=device, dtype=dtype)
    vocab = lm.hf.get_input_embeddings().weight.shape[0]
    reg = registry()
    problem = Problem(lm, _batches(vocab, examples, batch, pos, lm.device),
                      reg.metric("logit_diff"), Ablation("corrupted"))
    problem = problem.with_metric(problem.metric)
    m = reg.method(method)
    settings = m.configure(TASK_SETTINGS.get(method, {}))
    weights_mb = sum(p.numel() * p.element_size() for p in lm.hf.parameters()) / 2**20
    # a warm-up on two examples first: the library code and per-thread buffers the method's
    # kernels touch the first time are the process's, not the run's
    warm = Problem(lm, _batches(vocab, 2, 2, pos, lm.device, seed=1), problem.metric,
                   Ablation("corrupted"))
    m.run(warm.with_metric(warm.metric), settings, False)
    del warm
    gc.collect()
    cuda = lm.device.type == "cuda"
    reset_peak_memory(lm.devices)
    base = torch.cuda.memory_allocated(lm.device) / 2**20 if cuda else _rss_mb()
    t0 = time.perf_counter()
    m.run(problem, settings, False)
    synchronize(lm.devices)
    seconds = time.perf_counter() - t0
    peak = peak_memory_mb(lm.devices)
    extra = peak - base
    return {"model": model, "method": method, "examples": examples, "batch": batch, "pos": pos,
            "device": str(lm.device), "dtype": str(lm.dtype).replace("torch.", ""),
            "weights_mb": weights_mb, "extra_mb": extra,
            "peak_mb": peak if cuda else weights_mb + extra, "seconds": seconds}


def measure(model: str, method: str, examples: int, batch: int, pos: int,
            device: str = "cpu", dtype: str = "float32") -> dict:
    """:func:`measure_here` in a fresh process (``MALLOC_MMAP_THRESHOLD_`` fixed on CPU, one
    thread), so the window sees this run alone."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": _MMAP_THRESHOLD, "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "acdc_engine.planning.measure", "--model", model, "--method",
           method, "--examples", str(examples), "--batch", str(batch), "--pos", str(pos),
           "--device", device, "--dtype", dtype]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {method} on {model} failed: "
                           f"{done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    """The command line (module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--method", default="eap")
    ap.add_argument("--examples", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--pos", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    a = ap.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    print(json.dumps(measure_here(a.model, a.method, a.examples, a.batch, a.pos, a.device,
                                  a.dtype)))


if __name__ == "__main__":
    main()
