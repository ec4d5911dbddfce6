"""The attention heads' writes to the residual stream, from their outputs ``z``.

Head ``h`` writes ``z_h @ W_O[h]`` (``z`` [b, H, p, d_head], ``W_O[h]`` [d_head, d_model]). The
patched forward keeps every head's write in its writer buffer and adds their sum to the
residual stream. Two forms, one kernel:

    per_head(z, w_o)             -> [H, b, p, d]   every head's write (one batched GEMM; autograd)
    write_sum(z, w_o, out)       -> [b, p, d]      the same writes formed *in* ``out`` (a slice of
                                                   the writer buffer: no new tensor, no copy), and
                                                   their sum

:func:`write_sum`'s backward is one dense GEMM, ``dz = g @ W_O^T``: every head receives the sum's
gradient ``g``, so nothing is expanded over the heads and multiplied head by head. Both forms
run the same batched GEMM on the same operands, so the writes are equal bit for bit and the sum
is ``per_head(z, w_o).sum(0)`` bit for bit: runs that keep the buffer and runs that do not stay
identical.

``w_o`` is ``[H, d_head, d_model]`` in any memory layout (GPT-2's Conv1D weight is a plain view,
a Linear ``o_proj`` weight a permuted one).
"""

from __future__ import annotations

import torch

__all__ = ["per_head", "write_sum", "copy_sum"]


def _by_head(z: torch.Tensor) -> torch.Tensor:
    """``z`` [b, H, p, dh] -> [H, b*p, dh] (a copy, ``dh / d_model`` the size of the writes)."""
    b, H, p, dh = z.shape
    return z.transpose(0, 1).reshape(H, b * p, dh)


def per_head(z: torch.Tensor, w_o: torch.Tensor) -> torch.Tensor:
    """Every head's write, ``[H, b, p, d_model]``."""
    b, H, p, _ = z.shape
    return torch.bmm(_by_head(z), w_o).view(H, b, p, w_o.shape[-1])


class _WriteSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, w_o, out):
        b, H, p, dh = z.shape
        torch.bmm(_by_head(z), w_o, out=out.view(H, b * p, -1))
        ctx.w_o, ctx.shape = w_o, (b, p, H, dh)
        return out.sum(0)

    @staticmethod
    def backward(ctx, g):  # g [b, p, d] -> dz [b, H, p, dh]
        b, p, H, dh = ctx.shape
        w = ctx.w_o.reshape(H * dh, -1)  # [H*dh, d]: a view for both layouts above
        dz = (g.reshape(b * p, -1) @ w.T).view(b, p, H, dh).transpose(1, 2)
        return dz, None, None


def write_sum(z: torch.Tensor, w_o: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """Every head's write into ``out`` [H, b, p, d_model] (detached values), and their sum
    ``[b, p, d_model]``, differentiable in ``z``. With weight gradients wanted, or an ``out``
    that is not one contiguous block, the writes come from :func:`per_head` and are copied."""
    if w_o.requires_grad or not out.is_contiguous() or out.dtype != z.dtype:
        return copy_sum(per_head(z, w_o), out)
    return _WriteSum.apply(z, w_o, out)


def copy_sum(heads: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``heads`` [H, b, p, d] copied into ``out`` (values only), and ``heads.sum(0)``."""
    out.copy_(heads.detach())
    return heads.sum(0)
