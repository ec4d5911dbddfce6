"""The cost model of a discovery run, and its fitted constants with where they come from.

Memory (bytes, one device holding the model; ``nb`` the dtype's bytes, ``W``/``R`` the graph's
writers and readers, ``N`` examples of ``p`` tokens in batches of ``b``):

    peak = weights                       params x nb
         + cache                         W x N x p x d_model x nb: the corrupted run's writer
                                         outputs, cached for every batch for the whole run
         + (a[method] x (W + R) + c[method] x L) x b x p x d_model x nb
                                         the method's working memory for one batch: writer
                                         buffers, reader inputs and the activations the
                                         backward keeps, per writer/reader and per layer
         + logits x b x vocab x 4        the metric's float32 logits
         + masks[method] x W x R x 4     edge masks, their gradients, optimizer state

The ``a`` and ``c`` coefficients are fitted to peaks measured on CPU (:data:`MEMORY`;
``acdc_engine/planning/measured.json`` has the points and the command); the other terms are
tensor sizes. Time (seconds, on the hardware of :data:`TIME`) is the CPU-measured EAP fit of
docs/benchmarks.md times each method's cost in EAP runs (:data:`UNITS`,
docs/methods-attribution.md, docs/benchmarks.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .shape import ModelShape

__all__ = ["MEMORY", "UNMODELLED", "ACDC_BUDGET_MB", "TIME", "UNITS", "METHODS", "Costs",
           "memory_bytes", "seconds", "method_units"]

MEMORY = {
    # method -> (per writer and reader, per layer, masks): `python -m
    # acdc_engine.planning.calibration` refits them from measured.json (2026-12-08, CPU)
    "eap": (0.09, 35.78, 2.0),
    "eap-clean-corrupted": (0.091, 35.96, 2.0),
    "atp-graddrop": (0.067, 26.54, 2.0),
    "atp-qk": (0.086, 34.26, 2.0),
    "info-flow-routes": (0.016, 6.17, 2.0),
    "eap-ig": (0.1, 39.74, 2.0),
    "eap-ig-act": (0.158, 62.84, 2.0),
    "acdc": (0.0, 0.0, 2.0),  # not modelled (UNMODELLED): the sizes alone, a lower bound
    "acdc-guided": (0.0, 0.0, 2.0),
    "edge-pruning": (0.122, 48.48, 6.0),
    "ugs": (0.111, 44.02, 6.0),
}
"""Per method: the working memory of one batch in ``d_model``-vectors per token, per writer
and reader and per layer, and the float32 ``W x R`` masks it keeps (module docstring)."""

UNMODELLED = frozenset({"acdc", "acdc-guided"})
"""Methods whose working memory the model does not predict: ACDC's peak was 19 MiB on a 4-layer
GPT-2 shape and 504 MiB on a 4-layer Llama shape of a similar size (measured.json), which no
per-token coefficient fits. ACDC stacks candidates into one forward within a memory budget
(``AcdcConfig.mem_budget_mb``, :data:`ACDC_BUDGET_MB`), so for them the plan gives the terms
that are sizes plus that budget: an upper bound (the sizes alone are the lower bound)."""

ACDC_BUDGET_MB = 512
"""ACDC's default memory budget for stacked candidates (``AcdcConfig.mem_budget_mb``)."""

LOGITS = 1.0
"""The metric's logits: one float32 ``[b, vocab]`` per batch."""

TIME = {
    "hardware": "one core of the project's CI machine (shared 2-core x86_64, no GPU), "
                "process CPU time, float32 (docs/benchmarks.md, Scaling, 2026-12-01)",
    "eap_model_s_per_flop": 1.438e-10,
    "eap_edges_s_per_flop": 3.289e-11,
    "baseline_s_per_flop": 7.257e-11,
}
"""The CPU-measured fits: EAP ``= 1.438e-10 f_model + 3.289e-11 f_edges`` seconds (within 21%
of every measured point, GPT-2 small to a Llama-3.2-1B shape), a plain forward+backward
``= 7.257e-11 f_model`` (within 29%)."""

UNITS = {
    "eap": 1.0, "eap-clean-corrupted": 1.9, "atp-qk": 4.5, "info-flow-routes": 0.5,
}
"""Cost in EAP runs of the same batches, measured (docs/methods-attribution.md, "Cost,
measured": tiny-ioi, 64 examples, CPU time); the methods whose cost depends on the model or a
setting are :func:`method_units`."""

METHODS = tuple(MEMORY)
"""The methods the plan knows (the built-in methods)."""


@dataclass(frozen=True)
class Costs:
    """What one run is: the model, its examples, their length, the batch, the dtype's bytes
    and the method's settings that change its cost."""

    shape: ModelShape
    method: str
    examples: int
    seq_len: int
    batch: int
    nbytes: int
    settings: dict


def memory_bytes(c: Costs, batch: int | None = None, coefficients: dict | None = None) -> dict:
    """The peak's terms in bytes (module docstring), at ``batch`` (default ``c.batch``), with
    ``coefficients`` (method -> :data:`MEMORY`'s triple; default :data:`MEMORY`)."""
    s, b = c.shape, c.batch if batch is None else batch
    per_wr, per_layer, masks = (coefficients or MEMORY)[c.method]
    vectors = per_wr * (s.n_writers + s.n_readers) + per_layer * s.graph.n_layers
    out = {"weights": s.params * c.nbytes,
            "cache": s.n_writers * c.examples * c.seq_len * s.d_model * c.nbytes,
            "work": vectors * b * c.seq_len * s.d_model * c.nbytes,
            "logits": LOGITS * b * s.vocab * 4,
            "masks": masks * s.n_writers * s.n_readers * 4}
    if c.method in UNMODELLED:
        out["candidates (at most)"] = ACDC_BUDGET_MB * 2**20
    return out


def _flops(s: ModelShape, b: int, p: int) -> tuple[float, float]:
    """(forward FLOPs of the model on ``b`` x ``p`` tokens, FLOPs of the edge products)."""
    L = s.graph.n_layers
    blocks = max(s.params - s.vocab * s.d_model, 0)  # embeddings excluded: a lookup
    f_model = 2 * b * p * blocks + 2 * b * L * p * p * s.d_model + 2 * b * s.d_model * s.vocab
    return f_model, 2 * s.n_edges * b * p * s.d_model


def method_units(method: str, shape: ModelShape, settings: dict) -> tuple[float, str]:
    """(cost in EAP runs of every batch, what it assumes) for ``method``."""
    L, steps = shape.graph.n_layers, int(settings.get("ig_steps", 5))
    if method in UNITS:
        return UNITS[method], "measured ratio to EAP"
    if method == "eap-ig":
        return float(steps), f"{steps} integration steps (measured 4.6-5.2 EAP runs at 5)"
    if method == "eap-ig-act":
        nodes = 1 + (L if shape.graph.attn_only else 2 * L)
        if settings.get("per", "layer") == "all":
            return float(steps), f"{steps} steps"
        return float(steps * nodes), f"{steps} steps x {nodes} nodes (measured 39-50 at 45)"
    if method == "atp-graddrop":
        return 0.7 * L, f"{L} gradient runs, one per layer (measured 2.5-2.9 at 4 layers)"
    raise KeyError(method)


def seconds(c: Costs) -> tuple[float, str]:
    """Predicted seconds of the scoring on :data:`TIME`'s hardware, and what it assumes."""
    s, n_batches = c.shape, math.ceil(c.examples / c.batch)
    f_model, f_edges = _flops(s, c.batch, c.seq_len)
    eap = TIME["eap_model_s_per_flop"] * f_model + TIME["eap_edges_s_per_flop"] * f_edges
    plain = TIME["baseline_s_per_flop"] * f_model  # one forward+backward of a batch
    if c.method in ("edge-pruning", "ugs"):
        steps = int(c.settings.get("steps", 300))
        return steps * 2.0 * plain, (f"{steps} optimizer steps of one batch, each 2.0 plain "
                                     "forward+backward passes (benchmarks/mask_opt_cost.py)")
    if c.method in ("acdc", "acdc-guided"):
        per_edge = 0.045 * (plain / 2) * n_batches  # a forward is about half the baseline
        extra = eap * n_batches if c.method == "acdc-guided" else 0.0
        return (s.n_edges * per_edge + extra,
                f"{s.n_edges} edges tested at 0.045 plain forwards of every batch each "
                "(benchmarks/acdc_cost.py); a rough figure, the number tested depends on tau")
    units, why = method_units(c.method, s, c.settings)
    return units * eap * n_batches, f"{why}; EAP on {n_batches} batch(es) from the CPU fit"
