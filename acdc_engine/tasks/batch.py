"""A batch: rows of one token length and one number of read positions, as tensors."""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch

__all__ = ["Batch"]

_KEEP = ("extra", "last_only")  # Batch fields that are not one entry per example


def _move(t, device):
    return t.to(device) if isinstance(t, torch.Tensor) else t


@dataclass(kw_only=True)
class Batch:
    """Rows of one token length and one number ``k`` of read positions, built by keyword.

    clean, corrupted: [B, pos] token ids; answers, wrongs: [B, k] the answer (and the wrong
    answer, or None) at each read position; rows: the dataset row of each example; positions:
    [B, k] absolute read positions (None: the last position alone); answer_set, wrong_set:
    [B, m] token sets padded with -1 (use :meth:`set_mass` or :meth:`token_mask`); extra: the
    rows' other keys; clean_logits: [B, k, vocab] the clean model's logits at the read positions
    (when the metric needs them; [B, vocab] in the view :meth:`at`). :attr:`answer` and
    :attr:`wrong` ([B]) read the answers at the last read position.
    """

    clean: torch.Tensor
    corrupted: torch.Tensor
    answers: torch.Tensor  # [B, k]
    wrongs: torch.Tensor | None = None  # [B, k]
    rows: list[int]
    positions: torch.Tensor | None = None  # [B, k]
    clean_logits: torch.Tensor | None = None  # [B, k, vocab]
    answer_set: torch.Tensor | None = None  # [B, m], -1 = padding
    wrong_set: torch.Tensor | None = None  # [B, m'], -1 = padding
    extra: dict = field(default_factory=dict)
    last_only: bool | None = None  # every row reads its last position alone

    def __post_init__(self):
        b, p = self.clean.shape
        if self.positions is None:
            self.positions = torch.full((b, 1), p - 1, dtype=torch.long, device=self.clean.device)
            self.last_only = True
        if self.last_only is None:
            self.last_only = self.positions.shape[1] == 1 and bool((self.positions == p - 1).all())
        for name in ("answers", "wrongs"):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != (b, self.k):
                raise ValueError(f"Batch.{name} must be [B, k] = [{b}, {self.k}] (one per read "
                                 f"position; [B, 1] for the last position alone), got "
                                 f"{list(t.shape)}")

    def __len__(self) -> int:
        return self.clean.shape[0]

    @property
    def k(self) -> int:
        """The number of read positions per row."""
        return self.positions.shape[1]

    @property
    def answer(self) -> torch.Tensor:
        """[B] the answer at the last read position, ``answers[:, -1]`` (read-only); in the
        view :meth:`at` ``(j)`` the answer at position ``j``: what a metric reads."""
        return self.answers[:, -1]

    @property
    def wrong(self) -> torch.Tensor | None:
        """[B] the wrong answer at the last read position, ``wrongs[:, -1]`` (None without
        wrong answers; read-only); in the view :meth:`at` ``(j)`` the one at position ``j``."""
        return None if self.wrongs is None else self.wrongs[:, -1]

    def to(self, device) -> Batch:
        vals = {f.name: _move(getattr(self, f.name), device) for f in fields(self)
                if f.name != "extra"}
        return replace(self, **vals, extra={k: _move(v, device) for k, v in self.extra.items()})

    def repeat(self, c: int) -> Batch:
        """Every example repeated ``c`` times, candidate-major (``c`` stacked patches)."""

        def rep(t):
            if isinstance(t, torch.Tensor):
                return t.repeat(c, *([1] * (t.dim() - 1)))
            return None if t is None else list(t) * c

        vals = {f.name: rep(getattr(self, f.name)) for f in fields(self) if f.name not in _KEEP}
        return replace(self, **vals, extra={k: rep(v) for k, v in self.extra.items()})

    def select(self, idx) -> Batch:
        """The examples ``idx`` (a list or long tensor of indices into this batch)."""
        t = torch.as_tensor(idx, dtype=torch.long)

        def pick(v):
            if isinstance(v, torch.Tensor):
                return v[t.to(v.device)]
            return None if v is None else [v[i] for i in t.tolist()]

        vals = {f.name: pick(getattr(self, f.name)) for f in fields(self) if f.name not in _KEEP}
        return replace(self, **vals, extra={k: pick(v) for k, v in self.extra.items()})

    def at(self, j: int) -> Batch:
        """The view of read position ``j``: ``answers[:, j:j+1]`` (so ``answer = answers[:,
        j]``), ``clean_logits[:, j]`` ([B, vocab]), ``positions[:, j:j+1]``; what an
        ``reads="each"`` metric is given."""
        j = j % self.k
        col = lambda t: None if t is None else t[:, j : j + 1]  # noqa: E731
        return replace(
            self, positions=col(self.positions), answers=col(self.answers),
            wrongs=col(self.wrongs),
            clean_logits=None if self.clean_logits is None else self.clean_logits[:, j],
            last_only=self.last_only and j == self.k - 1)

    def token_mask(self, name: str, vocab: int) -> torch.Tensor:
        """[B, vocab] bool: True on the tokens of set ``name`` ("answer_set"/"wrong_set")."""
        ids = getattr(self, name)
        if ids is None:
            raise ValueError(f"this batch has no {name}")
        mask = torch.zeros(len(self), vocab + 1, dtype=torch.bool, device=ids.device)
        mask.scatter_(1, torch.where(ids < 0, vocab, ids), True)  # padding -> the spare column
        return mask[:, :vocab]

    def set_mass(self, probs: torch.Tensor, name: str) -> torch.Tensor:
        """Sum of ``probs`` [B, vocab] over the tokens of set ``name``: [B]."""
        return (probs * self.token_mask(name, probs.shape[-1])).sum(-1)
