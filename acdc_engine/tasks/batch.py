"""A batch: rows of one token length and one number of read positions, as tensors."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import torch

__all__ = ["Batch"]

_KEEP = ("extra", "last_only")  # Batch fields that are not one entry per example


def _move(t, device):
    return t.to(device) if isinstance(t, torch.Tensor) else t


@dataclass
class Batch:
    """Rows of one token length and one number ``k`` of read positions.

    clean, corrupted: [B, pos] token ids; answer, wrong: [B] the answer at the last read
    position; positions: [B, k] absolute read positions; answers, wrongs: [B, k] per read
    position; answer_set, wrong_set: [B, m] token sets padded with -1 (use :meth:`set_mass`
    or :meth:`token_mask`); extra: the rows' other keys; clean_logits: [B, k, vocab] the clean
    model's logits at the read positions (when the metric needs them; [B, vocab] in the view
    :meth:`at`). Built with only the first fields (as before positions existed) it reads the
    last position.
    """

    clean: torch.Tensor
    corrupted: torch.Tensor
    answer: torch.Tensor
    wrong: torch.Tensor | None
    rows: list[int]
    clean_logits: torch.Tensor | None = None  # [B, k, vocab]
    positions: torch.Tensor | None = None  # [B, k]
    answers: torch.Tensor | None = None  # [B, k]
    wrongs: torch.Tensor | None = None  # [B, k]
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
        if self.answers is None:
            self.answers = self.answer[:, None].expand(b, self.k)
        if self.wrongs is None and self.wrong is not None:
            self.wrongs = self.wrong[:, None].expand(b, self.k)

    def __len__(self) -> int:
        return self.clean.shape[0]

    @property
    def k(self) -> int:
        """The number of read positions per row."""
        return self.positions.shape[1]

    @property
    def read_positions(self) -> torch.Tensor | None:
        """What to pass as ``patching.run(positions=...)``: None when only the last position is
        read (``run(last_only=True)`` then gives the same [B, 1, vocab])."""
        return None if self.last_only else self.positions

    def to(self, device) -> Batch:
        vals = {f.name: _move(getattr(self, f.name), device) for f in fields(self)}
        vals["extra"] = {k: _move(v, device) for k, v in self.extra.items()}
        return Batch(**vals)

    def repeat(self, c: int) -> Batch:
        """Every example repeated ``c`` times, candidate-major (``c`` stacked patches)."""

        def rep(t):
            if isinstance(t, torch.Tensor):
                return t.repeat(c, *([1] * (t.dim() - 1)))
            return None if t is None else list(t) * c

        vals = {f.name: rep(getattr(self, f.name)) for f in fields(self) if f.name not in _KEEP}
        vals.update(extra={k: rep(v) for k, v in self.extra.items()}, last_only=self.last_only)
        return Batch(**vals)

    def select(self, idx) -> Batch:
        """The examples ``idx`` (a list or long tensor of indices into this batch)."""
        t = torch.as_tensor(idx, dtype=torch.long)

        def pick(v):
            if isinstance(v, torch.Tensor):
                return v[t.to(v.device)]
            return None if v is None else [v[i] for i in t.tolist()]

        vals = {f.name: pick(getattr(self, f.name)) for f in fields(self) if f.name not in _KEEP}
        vals.update(extra={k: pick(v) for k, v in self.extra.items()}, last_only=self.last_only)
        return Batch(**vals)

    def at(self, j: int) -> Batch:
        """The view of read position ``j``: ``answer = answers[:, j]``, ``clean_logits[:, j]``
        ([B, vocab]), ``positions[:, j:j+1]``; what an ``reads="each"`` metric is given."""
        j = j % self.k
        pick = lambda t: None if t is None else t[:, j : j + 1]  # noqa: E731
        return Batch(
            self.clean, self.corrupted, self.answers[:, j],
            None if self.wrongs is None else self.wrongs[:, j], self.rows,
            None if self.clean_logits is None else self.clean_logits[:, j],
            pick(self.positions), pick(self.answers), pick(self.wrongs), self.answer_set,
            self.wrong_set, self.extra, self.last_only and j == self.k - 1)

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
