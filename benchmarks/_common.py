"""Pieces the benchmarks share: random models built in memory, random batches, the strict
forward+backward baseline, EAP as the benchmarks time it, a timer that reads peak memory, and
the ``--device/--dtype`` options.

Imported by the scripts in this directory (``python benchmarks/x.py`` puts it on the path).
Timers synchronise the device before reading the clock, and peak memory is
:mod:`acdc_engine.resources`'s: per CUDA device (``max_memory_allocated``, weights included), or
the process's peak resident set on CPU (weights included; ``rss_before`` says how much of it was
resident before the timed call).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from acdc_engine.resources import peak_memory_mb, reset_peak_memory, synchronize
from acdc_engine.scoring.attribution import IG_STEPS

DTYPES = ("float32", "bfloat16", "float16")


def add_shape_args(ap, pos: int = 32) -> None:
    """``--layers --heads --d-model --vocab`` (default: GPT-2 small) and ``--batch --pos``."""
    ap.add_argument("--layers", type=int, default=12)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--d-model", type=int, default=768)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--pos", type=int, default=pos)


def add_device_args(ap, device: str | None = None, dtype: str = "float32") -> None:
    """``--device`` (cpu, cuda, cuda:N; default: cuda when there is one) and ``--dtype``."""
    ap.add_argument("--device", default=device,
                    help="cpu, cuda or cuda:N (default: cuda when torch sees one, else cpu)")
    ap.add_argument("--dtype", default=dtype, choices=DTYPES, help=f"weights (default {dtype})")


@dataclass(frozen=True)
class Shape:
    """A model shape: ``family`` is a transformers model_type; ``kv_heads`` None = heads."""

    name: str
    family: str
    layers: int
    heads: int
    d_model: int
    d_mlp: int
    vocab: int
    kv_heads: int | None = None
    tied: bool = True  # input and output embeddings shared (GPT-2, Llama-3.2-1B)

    @property
    def params_per_layer(self) -> int:
        """Weights of one block (matrices only: biases and norms ignored)."""
        d, h, kv = self.d_model, self.heads, self.kv_heads or self.heads
        attn = 2 * d * d + 2 * d * (d * kv // h)  # q, o; k, v (grouped-query: fewer)
        mlp = (3 if self.family != "gpt2" else 2) * d * self.d_mlp  # gated MLPs have 3 matrices
        return attn + mlp

    @property
    def params(self) -> int:
        """Parameter count: the blocks, the embeddings (once when tied), GPT-2's positions."""
        pos = 1024 * self.d_model if self.family == "gpt2" else 0
        emb = self.vocab * self.d_model * (1 if self.tied else 2)
        return self.layers * self.params_per_layer + emb + pos

    def graph(self):
        from acdc_engine.graph import Graph

        return Graph(self.layers, self.heads)


def build_model(shape: Shape, n_pos: int = 1024, seed: int = 0, device=None,
                dtype: str = "float32") -> torch.nn.Module:
    """A Hugging Face causal LM of ``shape`` with random weights (transformers' own init),
    built directly on ``device`` in ``dtype`` (a 1B model initialises in seconds on a GPU)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    from acdc_engine.testing.builders import hf_shape

    kw = hf_shape(shape.family, shape.layers, shape.heads, shape.kv_heads or shape.heads,
                  shape.d_model, vocab=shape.vocab, n_pos=n_pos)
    if shape.family == "gpt2":
        kw["n_inner"] = shape.d_mlp
    else:
        kw.update(intermediate_size=shape.d_mlp, tie_word_embeddings=shape.tied)
    torch.manual_seed(seed)
    cfg = AutoConfig.for_model(shape.family, **kw, bos_token_id=0, eos_token_id=0,
                               pad_token_id=0)
    from transformers.initialization import no_init_weights

    from acdc_engine.models import resolve_device, resolve_dtype

    # transformers' init runs every initialiser twice, single-threaded (minutes for 1B
    # parameters): build empty, then draw the weights once
    with torch.device(resolve_device(device)), no_init_weights():
        model = AutoModelForCausalLM.from_config(cfg, dtype=resolve_dtype(dtype))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.02)
            elif "bias" in name:
                p.zero_()
            else:  # norm scales
                p.fill_(1.0)
    model.tie_weights()
    return model


def load_in_memory(hf: torch.nn.Module, device=None, dtype: str = "float32", name="random"):
    """``hf`` moved to ``device``/``dtype`` and adapted by its family (with the load-time
    self-check), without writing it to disk: for shapes whose weights take gigabytes."""
    from acdc_engine.loading import adapt
    from acdc_engine.models import resolve_device, resolve_dtype
    from acdc_engine.plugins import registry

    hf = hf.to(resolve_device(device), resolve_dtype(dtype)).eval()
    return adapt(name, hf, None, registry().families)


def random_batch(vocab: int, batch: int, pos: int, device, seed: int = 0):
    """One :class:`~acdc_engine.tasks.Batch` of random clean/corrupted token ids and answers."""
    from acdc_engine.tasks import Batch

    gen = torch.Generator().manual_seed(seed)
    ids = lambda *shape: torch.randint(0, vocab, shape, generator=gen).to(device)  # noqa: E731
    return Batch(clean=ids(batch, pos), corrupted=ids(batch, pos), answers=ids(batch)[:, None],
                 wrongs=ids(batch)[:, None], rows=list(range(batch)))


def baseline_step(lm, batch, metric, param_grads: bool = False):
    """The model's own forward and a backward to the input embeddings (``param_grads``: to the
    weights too), the logits of the last position only, as EAP computes them."""
    hf = lm.hf

    def step():
        for p in hf.parameters():
            p.requires_grad_(param_grads)
            p.grad = None
        emb = hf.get_input_embeddings()(batch.clean).detach().requires_grad_(True)
        logits = hf(inputs_embeds=emb, logits_to_keep=1).logits  # [b, 1, vocab]
        metric(logits[:, -1], batch).sum().backward()
    return step


def method_step(lm, batch, metric, method: str = "eap", ig_steps: int = IG_STEPS):
    """One attribution over ``batch``; a fresh Problem per call, so the corrupted forward is
    part of what is timed."""
    from acdc_engine.patching import Ablation
    from acdc_engine.problem import Problem
    from acdc_engine.scoring import attribute

    return lambda: attribute(Problem(lm, [batch], metric, Ablation("corrupted")), method,
                             ig_steps=ig_steps, progress=False)


@dataclass
class Timing:
    seconds: float  # median wall-clock
    cpu_seconds: float  # median CPU time of this process (all its threads)
    peak_mb: float  # peak memory in the timed calls (weights included)
    base_mb: float  # memory in use when the window opened (CPU: resident set; CUDA: allocated)

    @property
    def extra_mb(self) -> float:
        """Peak above what was in use before the call: the method's own working memory."""
        return self.peak_mb - self.base_mb


def timed(fn, device, repeats: int = 1, warmup: bool = True) -> Timing:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` (after one untimed warm-up) and
    the highest peak memory, each call in its own window; the device is synchronised before
    the clock is read. CPU time is the process's: on a CPU shared with other jobs it measures
    the work where wall-clock time measures the contention."""
    if warmup:
        fn()
    times, cpu, peaks, bases = [], [], [], []
    for _ in range(repeats):
        reset_peak_memory(device)
        bases.append(memory_now_mb(device))
        t, c = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        peaks.append(peak_memory_mb(device))
    return Timing(statistics.median(times), statistics.median(cpu), max(peaks), min(bases))


def memory_now_mb(device) -> float:
    """Memory in use now: CUDA tensors allocated on ``device``, or the resident set."""
    if torch.device(device).type == "cuda":
        return torch.cuda.memory_allocated(torch.device(device)) / 2**20
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_json(path, obj) -> None:
    """``obj`` as indented JSON at ``path`` (parents created)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(obj, indent=1, default=str) + "\n")
