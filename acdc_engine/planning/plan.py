"""The plan of a discovery run before it starts: memory per device, time, the largest batch
that fits, and whether the run needs a device map or more ranks.

    p = plan("gpt2-ioi-bpe", examples=256, seq_len=16, method="eap")
    print(p.render())

Everything comes from the model's config (:func:`~acdc_engine.planning.shape.model_shape`, no
weights) and the fitted cost model (:mod:`acdc_engine.planning.costs`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import AcdcError
from .costs import METHODS, TIME, UNMODELLED, Costs, memory_bytes, seconds
from .shape import ModelShape, model_shape

__all__ = ["Plan", "Hardware", "plan", "device_bytes", "DTYPE_BYTES", "GPU_DEFAULT_GIB", "RESERVE"]

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}
"""Bytes per value of the dtypes a run can use."""

GPU_DEFAULT_GIB = 80.0
"""A CUDA device's memory when torch sees none here (an 80 GB H100); ``--memory`` overrides."""

RESERVE = 0.10
"""Of every CUDA device, kept free for the CUDA context, allocator slack and workspaces."""


def device_bytes(device: str, memory_gib: float | None = None) -> tuple[float, str]:
    """Usable bytes of one ``device`` and where the figure comes from: ``memory_gib`` if
    given; on CUDA the device's total memory (or :data:`GPU_DEFAULT_GIB` when torch sees no
    CUDA device) less :data:`RESERVE`; on CPU the machine's physical memory."""
    if memory_gib is not None:
        if not memory_gib > 0:
            raise AcdcError(f"the device memory must be a positive number of GiB, got "
                            f"{memory_gib!r}")
        return memory_gib * 2**30 * (1 - RESERVE if device.startswith("cuda") else 1), "given"
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_available():
            idx = int(device.split(":")[1]) if ":" in device else torch.cuda.current_device()
            total = torch.cuda.get_device_properties(idx).total_memory
            return total * (1 - RESERVE), f"{device}'s total less {RESERVE:.0%}"
        return (GPU_DEFAULT_GIB * 2**30 * (1 - RESERVE),
                f"assumed {GPU_DEFAULT_GIB:.0f} GiB (no CUDA device here) less {RESERVE:.0%}")
    if device != "cpu":
        raise AcdcError(f"unknown device {device!r} for a plan (use cpu, cuda or cuda:N)")
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 16 * 2**30
    return float(total), "this machine's physical memory"


@dataclass(frozen=True)
class Plan:
    """A run's predicted costs (bytes and seconds) and the advice that follows from them."""

    costs: Costs
    device: str
    dtype: str
    memory: dict
    capacity: float
    capacity_from: str
    max_batch: int
    seconds: float
    time_basis: str
    advice: list[str] = field(default_factory=list)

    @property
    def peak_bytes(self) -> float:
        """The predicted peak on the device (weights included)."""
        return float(sum(self.memory.values()))

    @property
    def fits(self) -> bool:
        """Whether the run fits one device at its batch size."""
        return self.peak_bytes <= self.capacity

    def render(self) -> str:
        """The plan as the lines ``acdc plan`` prints."""
        c, s = self.costs, self.costs.shape
        gib = lambda x: f"{x / 2**30:.2f} GiB" if x >= 2**30 else f"{x / 2**20:.1f} MiB"  # noqa
        lines = [f"model {s.model}: {s.model_type} ({s.family} family), "
                 f"{s.params / 1e6:.1f}M parameters, {s.graph.n_layers} layers x "
                 f"{s.graph.n_heads} heads, d_model {s.d_model}, vocab {s.vocab}; "
                 f"{s.n_writers} writers, {s.n_readers} readers, {s.n_edges} edges",
                 f"run: {c.method}, {c.examples} examples x {c.seq_len} tokens in batches of "
                 f"{c.batch}, {self.dtype} on {self.device}",
                 f"peak memory per device: "
                 f"{'at most ' if c.method in UNMODELLED else ''}{gib(self.peak_bytes)} "
                 f"({', '.join(f'{k} {gib(v)}' for k, v in self.memory.items())})",
                 f"device memory: {gib(self.capacity)} ({self.capacity_from}); "
                 + ("fits" if self.fits else "does NOT fit"),
                 f"largest batch that fits: {self.max_batch}",
                 f"time: {_duration(self.seconds)} for the scoring on the measured hardware, "
                 f"{TIME['hardware']} ({self.time_basis})"
                 + ("; no GPU time has been measured" if self.device != "cpu" else "")]
        lines += [f"advice: {a}" for a in self.advice]
        return "\n".join(lines)


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    return f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _max_batch(c: Costs, capacity: float) -> int:
    """The largest batch size whose predicted peak fits ``capacity`` (0: none)."""
    fixed = memory_bytes(c, 0)
    per = sum(memory_bytes(c, 1).values()) - sum(fixed.values())
    room = capacity - sum(fixed.values())
    return max(int(room // per), 0) if per > 0 else c.examples


def _advice(p_mem: dict, capacity: float, max_batch: int, c: Costs, secs: float) -> list[str]:
    out = []
    fixed = p_mem["weights"] + p_mem["masks"]
    if p_mem["weights"] > capacity:
        k = int(p_mem["weights"] // capacity) + 1
        out.append(f"the weights alone ({p_mem['weights'] / 2**30:.1f} GiB) exceed one device: "
                   f"a device map over at least {k} devices (docs/scale.md, Device maps)")
    elif fixed + p_mem["cache"] > capacity or max_batch < 1:
        one = sum(memory_bytes(c, 1).values()) - p_mem["cache"] - fixed  # a batch of one
        k = int(p_mem["cache"] // max(capacity - fixed - one, 1)) + 1
        out.append(f"the cached corrupted activations of {c.examples} examples "
                   f"({p_mem['cache'] / 2**30:.2f} GiB) do not fit beside the weights: "
                   f"at least {k} ranks (each caches its share of the examples; acdc discover "
                   "--workers N or torchrun), fewer examples, or in Python "
                   "Problem.build(..., cache=False) (the corrupted run again at each use)")
    elif max_batch < c.batch:
        out.append(f"batch {c.batch} does not fit: use --batch-size {max_batch} or less")
    if secs > 3600 and c.method not in ("edge-pruning", "ugs"):
        out.append("over an hour: ranks split the examples (time / ranks, docs/scale.md)")
    if c.method in UNMODELLED:
        out.append(f"{c.method}'s working memory is not modelled (measured 19-504 MiB on small "
                   "models, docs/scale.md): the peak above is an upper bound, with its stacked "
                   "candidates at their memory budget")
    return out or ["fits one device as it is"]


@dataclass(frozen=True)
class Hardware:
    """Where a planned run goes: the ``device`` (``cpu``, ``cuda``, ``cuda:1``), the model's
    ``dtype`` and one device's memory in GiB (``memory_gib``; None: :func:`device_bytes`
    finds it)."""

    device: str = "cpu"
    dtype: str = "float32"
    memory_gib: float | None = None


def plan(model: str | ModelShape, examples: int, seq_len: int, method: str = "eap",
         batch_size: int = 32, settings: dict | None = None,
         hardware: Hardware | None = None) -> Plan:
    """The :class:`Plan` of ``method`` (with its ``settings``) on ``examples`` prompts of
    ``seq_len`` tokens of ``model`` (a name, path or hub id whose config is read; or a shape)
    in batches of ``batch_size``, on ``hardware`` (default: the CPU in float32)."""
    hw = hardware or Hardware()
    device, dtype, memory_gib = hw.device, hw.dtype, hw.memory_gib
    if method not in METHODS:
        raise AcdcError(f"unknown method {method!r} for a plan (known: {', '.join(METHODS)})")
    for name, v in (("examples", examples), ("seq-len", seq_len), ("batch size", batch_size)):
        if not isinstance(v, int) or v < 1:
            raise AcdcError(f"the {name} must be a whole number >= 1, got {v!r}")
    if dtype not in DTYPE_BYTES:
        raise AcdcError(f"unknown dtype {dtype!r} for a plan (use {', '.join(DTYPE_BYTES)})")
    capacity, where = device_bytes(device, memory_gib)
    shape = model if isinstance(model, ModelShape) else model_shape(model)
    c = Costs(shape=shape, method=method, examples=examples, seq_len=seq_len,
              batch=min(batch_size, examples), nbytes=DTYPE_BYTES[dtype],
              settings=dict(settings or {}))
    mem = memory_bytes(c)
    secs, basis = seconds(c)
    mb = min(_max_batch(c, capacity), examples)
    return Plan(costs=c, device=device, dtype=dtype, memory=mem, capacity=capacity,
                capacity_from=where, max_batch=mb, seconds=secs, time_basis=basis,
                advice=_advice(mem, capacity, mb, c, secs))
