"""The tokens of each position group of a patched run, for position-aware masks.

A position-aware mask is ``[n_writers, n_readers, n_groups]`` and each token of the batch
belongs to one group (``labels`` [batch, pos], from :mod:`acdc_engine.positions`).
:func:`acdc_engine.patching.run` corrects each group's tokens through its own column of the
mask (:meth:`TokenGroups.correction`) and sums per-token edge products into their groups
(:meth:`TokenGroups.products`): the same multiply-adds as without positions.
"""

from __future__ import annotations

import torch

__all__ = ["TokenGroups"]

_TOKEN_CHUNK = 16 << 20
"""Entries of per-token edge products held at once by :meth:`TokenGroups.products` (64 MiB)."""


class TokenGroups:
    """The tokens of each position group of a run: ``labels`` [b, p] flattened, and each
    group's flat token indices (for the forward correction, :meth:`correction`)."""

    def __init__(self, labels: torch.Tensor, n_groups: int):
        self.flat = labels.reshape(-1)  # [T = b * p]
        if len(self.flat) and (int(self.flat.min()) < 0 or int(self.flat.max()) >= n_groups):
            raise ValueError(f"position labels must lie in 0..{n_groups - 1}, the mask's groups")
        order = torch.argsort(self.flat, stable=True)
        self.idx = order.split(torch.bincount(self.flat, minlength=n_groups).tolist())
        self.n_groups = n_groups
        self.b, self.p = labels.shape

    def correction(self, m: torch.Tensor, src: torch.Tensor, abl) -> torch.Tensor:
        """``sum_u (m[u, :, labels[t]] - 1) * (src - abl)[u, t]`` for every token ``t``:
        m [n, s, G], src [n, b, p, d], abl [n, b or 1, p, d] or None -> [s, b, p, d]."""
        n, s, _ = m.shape
        dm = src.shape[-1]
        x = src.reshape(n, -1, dm)  # [n, T, d]
        a = None if abl is None else abl.reshape(n, -1, dm)  # [n, T or p, d]
        out = src.new_zeros(s, x.shape[1], dm)
        for grp, idx in enumerate(self.idx):
            mg = m[:, :, grp]
            if len(idx) == 0 or bool((mg == 1).all()):
                continue
            idx = idx.to(src.device)
            d = x.index_select(1, idx)  # [n, t, d]
            if a is not None:  # a mean ablation broadcasts over the batch: token -> position
                d = d - a.index_select(1, idx if a.shape[1] == x.shape[1] else idx % self.p)
            mt = (mg - 1).T.to(src.dtype)  # [s, n]
            out.index_copy_(1, idx, (mt @ d.reshape(n, -1)).view(s, len(idx), dm))
        return out.view(s, *src.shape[1:])

    def products(self, delta: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        """``sum_{t in group} delta_u[t] . grad_v[t]`` per group: delta [n, b, p, d], grad
        [s, b, p, d] -> [n, s, G] float32.

        One small GEMM per token, batched (``[T, n, d] @ [T, d, s]`` on strided views of the
        two tensors: nothing is copied or sorted), then each token's [n, s] product is added
        to its group's; the same multiply-adds as the unsplit product. Tokens go in chunks
        that bound the per-token products to about 64 MiB."""
        n, s, dm = delta.shape[0], grad.shape[0], delta.shape[-1]
        x = delta.reshape(n, -1, dm).transpose(0, 1)  # [T, n, d] (a view)
        y = grad.reshape(s, -1, dm).permute(1, 2, 0)  # [T, d, s] (a view)
        out = torch.zeros(self.n_groups, n, s, device=delta.device, dtype=torch.float32)
        flat = self.flat.to(delta.device)
        step = max(1, _TOKEN_CHUNK // max(1, n * s))
        for lo in range(0, x.shape[0], step):
            part = torch.bmm(x[lo : lo + step], y[lo : lo + step])  # [t, n, s]
            out.index_add_(0, flat[lo : lo + step], part.float())
        return out.permute(1, 2, 0)
