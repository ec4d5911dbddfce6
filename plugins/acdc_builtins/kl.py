"""KL divergence to the clean model, accurate down to the tiny values ACDC prunes by.

ACDC compares differences of ``KL(q || p)`` (q: the clean run's next-token distribution, p:
a patched run's) against a threshold that can be 1e-5 or less. The textbook float32 forms
lose that: ``sum q (log q - log p)`` and its rearrangements sum terms of the size of the
entropy (~10) to get a value of ~1e-6, so float32 rounding (~1e-7 per term) is 10-100% of
the answer. This module computes the same quantity from small terms instead.

With ``d = z - c`` (patched minus clean logits: exact in float32 when the two runs are close,
and one rounding otherwise), any shift ``s`` and ``v = d - s``::

    KL(q || p) = -E_q[v] + log E_q[exp v] = log1p(E_q[expm1 v]) - E_q[v]

(``sum q = 1``; no ``log q``, ``log p`` or normaliser appears). ``s`` is chosen as ``E_q[d]``
so that ``v`` is centred: both sums then add terms of size ``q |v|``, and ``expm1`` keeps its
relative accuracy for small ``v``. The rounding error is about ``k u sum q |v|`` (``u =
2^-24``, ``k`` a few units: one rounding each for ``v``, ``expm1``, the product, and the
cascade summation torch's reductions use), against ``KL ~ E_q[v^2] / 2``: relative
``~ k u sqrt(2 / KL)``, 2e-4 at KL = 1e-6 for k = 2 (measured: 5e-5 at 5e-7, and 1e-7 at
KL ~ 1). ``q`` is formed in float64 and rounded once. ``benchmarks/kl_accuracy.py`` prints
the error against float64 over KL values and vocabularies; tests/scoring/test_kl_accuracy.py
holds it to the bound above.

Cost: the candidates are processed in blocks of rows that fit in cache (on the CPU; one block
on a GPU), in the logits' own storage when the caller gives them up (the prepared form) and a
block-sized scratch otherwise, so the form is no slower than the textbook one. A row whose
``expm1`` overflows (some patched logit exceeds its clean value by ~88 more than the average:
KL is then large) is recomputed as ``logsumexp(log q + v) - E_q[v]`` in float64.

The gradient (EAP scoring by KL) is the textbook one, ``p - q``, from a custom backward that
forms both in float64 and rounds the difference once.
"""

from __future__ import annotations

import torch

from acdc_engine import buffers

__all__ = ["kl_div", "kl_div_prepared", "KlClean", "kl_to_clean"]

_BLOCK = 1 << 18
"""Elements per block of rows on the CPU (1 MiB of float32: stays in cache)."""


class KlClean:
    """The clean side of the KL, fixed per batch: logits ``c``, ``q`` and ``log q`` [B, V]
    (float32; ``q`` and ``log q`` formed in float64 and rounded once; ``q64`` kept for the
    gradient)."""

    def __init__(self, clean_logits: torch.Tensor):
        c = clean_logits.detach()
        logq = c.double().log_softmax(-1)
        self.c = c.float().contiguous()
        self.q64 = logq.exp()
        self.q = self.q64.float()
        self.logq = logq.float()


def _rows(v: torch.Tensor, k: KlClean, r0: int, r1: int, scratch: torch.Tensor) -> torch.Tensor:
    """KL of the rows ``v`` [r, V] (the patched logits of clean rows r0:r1), computed in
    ``v``'s own storage (overwritten); -> [r] float64."""
    q = k.q[r0:r1]
    v.sub_(k.c[r0:r1])  # d = z - c
    v.sub_(torch.mul(v, q, out=scratch).sum(-1, keepdim=True))  # v = d - E_q[d]
    mean = torch.mul(v, q, out=scratch).sum(-1).double()  # E_q[v]: ~0, kept exact
    far = torch.expm1(v, out=scratch).mul_(q).sum(-1).double()  # E_q[expm1 v]
    kl = far.log1p() - mean
    bad = ~torch.isfinite(kl)
    if bad.any():  # expm1 overflowed: KL is large, the log-sum-exp form loses nothing
        rows = bad.nonzero()[:, 0]
        lse = (k.logq[r0:r1][rows].double() + v[rows].double()).logsumexp(-1)
        kl[rows] = lse - mean[rows]
    return kl


def kl_to_clean(logits: torch.Tensor, clean: KlClean, overwrite: bool = False) -> torch.Tensor:
    """KL(q || softmax(logits)) for logits [..., B, V] -> [..., B] (float32), no gradient.
    ``overwrite``: the (contiguous float32) logits may be used as working storage."""
    B, V = clean.c.shape
    lead = logits.shape[:-2]
    if logits.shape[-2:] != (B, V):
        raise ValueError(f"KL: logits {tuple(logits.shape)} do not end in the clean "
                         f"logits' shape {(B, V)}")
    own = overwrite and logits.dtype == torch.float32 and logits.is_contiguous()
    x = logits.detach().reshape(-1, B, V)
    step = max(1, min(B, _BLOCK // V)) if buffers.cpu_kernels(logits) else B
    scratch = torch.empty(step, V, device=logits.device)
    work = None if own else torch.empty(step, V, device=logits.device)
    out = torch.empty(x.shape[0], B, dtype=torch.float64, device=logits.device)
    for i in range(x.shape[0]):
        for r0 in range(0, B, step):
            r1 = min(B, r0 + step)
            v = x[i, r0:r1] if own else work[: r1 - r0].copy_(x[i, r0:r1])
            out[i, r0:r1] = _rows(v, clean, r0, r1, scratch[: r1 - r0])
    return out.float().view(*lead, B)


class _KL(torch.autograd.Function):
    """KL with the textbook gradient ``dKL/dz = p - q`` (``p = softmax(z)``)."""

    @staticmethod
    def forward(ctx, logits, clean):
        ctx.save_for_backward(logits)
        ctx.clean = clean
        return kl_to_clean(logits, clean)

    @staticmethod
    def backward(ctx, grad):
        (logits,) = ctx.saved_tensors
        p = logits.double().softmax(-1)  # [.., B, V]: float64 as q was, rounded once below
        return (grad[..., None] * (p - ctx.clean.q64)).to(logits.dtype), None


def kl_div(logits, batch):
    """KL(clean || patched) of the next-token distributions (see the module docstring)."""
    clean = KlClean(batch.clean_logits)
    if logits.requires_grad:
        return _KL.apply(logits, clean)
    return kl_to_clean(logits, clean)


def kl_div_prepared(batch):
    """The clean side once per batch; then [c, B, vocab] -> [c, B], using the logits as
    working storage (the prepared form may)."""
    clean = KlClean(batch.clean_logits)
    return lambda logits: kl_to_clean(logits, clean, overwrite=True)
