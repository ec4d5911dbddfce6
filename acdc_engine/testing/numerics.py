"""Float32 tolerances derived from a float64 reference, not from a run that passed once.

A test that compares two float32 computations of one quantity (a fast path and the plain one, or
two orders of summation) cannot know from the float32 numbers alone how far apart they may be:
that depends on the magnitudes involved (tracr's activations are in the hundreds) and on the
CPU's vector kernels (AVX2, AVX-512 and the scalar ``default`` kernels sum in different orders).
So the rule is: run the plain path once more in float64 on the same inputs (the weights cast up
are exact: every float32 is a float64), measure the plain float32 path's own error against it,
and allow the fast path a small multiple of that error plus a few ulps of the magnitudes::

    bound = factor * |plain32 - ref64| + ulps * eps32 * max(|ref64|, magnitudes...)

``factor`` (4 by default) says "not materially worse than the plain path"; the ``ulps`` term
(16 by default: a few roundings of the largest value involved) keeps the bound meaningful where
the plain path happens to be exact. Both numbers are stated next to every use.

    float64(model)                            the model's weights in float64 inside the block
    assert_close_to_f64(fast, plain, ref64)   the rule above (returns the measured errors)
    f32_bound(ref64, *magnitudes, plain=...)  the bound alone

``ACDC_NUMERICS_REPORT=1 pytest -s ...`` prints every comparison's measured errors.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

import torch

__all__ = ["EPS32", "float64", "magnitude", "max_error", "f32_bound", "assert_close_to_f64",
           "Errors"]

EPS32 = float(torch.finfo(torch.float32).eps)
"""2**-23 = 1.19e-7: one ulp of 1.0 in float32."""


@contextmanager
def float64(model):
    """Inside the block, ``model`` (a :class:`~acdc_engine.models.LoadedModel`) computes in
    float64: its weights cast up (exactly) and back to their dtype after (exactly again). The
    adapters read their weights from the modules on every call, so no cache goes stale."""
    was = model.dtype
    # mixture-of-experts blocks default to grouped_mm, which has no float64 kernel: the eager
    # experts compute the same sums inside the block
    cfg = getattr(model.hf, "config", None)
    experts = getattr(cfg, "_experts_implementation", None)
    if experts not in (None, "eager"):
        cfg._experts_implementation = "eager"
    model.hf.double()
    try:
        yield model
    finally:
        model.hf.to(was)
        if experts not in (None, "eager"):
            cfg._experts_implementation = experts


def _tensors(x):
    if isinstance(x, torch.Tensor):
        return [x.detach()]
    if isinstance(x, (list, tuple)):
        return [t for y in x for t in _tensors(y)]
    return [torch.tensor(float(x), dtype=torch.float64)]  # a number as it is, not rounded


def magnitude(*xs) -> float:
    """The largest absolute value among tensors, numbers and lists of them."""
    vals = [float(t.abs().max()) for x in xs for t in _tensors(x) if t.numel()]
    return max(vals, default=0.0)


def max_error(x, ref) -> float:
    """max |x - ref|, computed in float64."""
    pairs = list(zip(_tensors(x), _tensors(ref), strict=True))
    return max((float((a.double() - b.double()).abs().max()) for a, b in pairs if a.numel()),
               default=0.0)


def f32_bound(ref64, *magnitudes, plain=None, factor: float = 4.0, ulps: float = 16.0) -> float:
    """``factor * |plain - ref64| + ulps * eps32 * max(|ref64|, magnitudes)``; without ``plain``,
    the a-priori part alone (``ulps`` roundings of the largest magnitude)."""
    scale = max(magnitude(ref64), magnitude(*magnitudes) if magnitudes else 0.0)
    err = 0.0 if plain is None else max_error(plain, ref64)
    return factor * err + ulps * EPS32 * scale


@dataclass(frozen=True)
class Errors:
    """Measured errors against the float64 reference: the fast path's, the plain path's and the
    bound the fast one must stay within."""
    fast: float  # |fast - ref64|
    plain: float  # |plain - ref64|
    bound: float


def assert_close_to_f64(fast, plain, ref64, *magnitudes, factor: float = 4.0,
                        ulps: float = 16.0, what: str = "") -> Errors:
    """Two float32 computations ``fast`` and ``plain`` of one quantity, and ``ref64`` the plain
    computation in float64 on the same inputs: ``fast`` is within ``f32_bound`` of ``ref64``
    (so within that plus the plain path's error of ``plain``). Tensors, numbers or lists."""
    e_fast, e_plain = max_error(fast, ref64), max_error(plain, ref64)
    bound = f32_bound(ref64, *magnitudes, plain=plain, factor=factor, ulps=ulps)
    scale = max(magnitude(ref64), magnitude(*magnitudes) if magnitudes else 0.0)
    msg = (f"{what + ': ' if what else ''}float32 error against float64 {e_fast:.3g} > bound "
           f"{bound:.3g} = {factor:g} x the plain path's {e_plain:.3g} + {ulps:g} eps x "
           f"{scale:.3g}")
    if os.environ.get("ACDC_NUMERICS_REPORT"):  # pytest -s: the measured errors of every site
        print(f"\n[numerics] {what or 'compare'}: fast {e_fast:.3g} plain {e_plain:.3g} "
              f"bound {bound:.3g} scale {scale:.3g}")
    # raised, not asserted: the check holds under python -O too
    if not (e_fast <= bound and max_error(fast, plain) <= bound + e_plain):
        raise AssertionError(msg)
    return Errors(e_fast, e_plain, bound)
