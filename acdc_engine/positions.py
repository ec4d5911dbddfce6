"""Position-aware edges: which position group every token of a batch belongs to.

A position-aware graph (:meth:`acdc_engine.graph.Graph.with_positions`) splits each edge
``u->v`` by the tokens its signal travels at; a :class:`PositionSplit` says how tokens are
grouped, and gives a batch's per-token group labels ``[batch, pos]`` that
:func:`acdc_engine.patching.run` reads a ``[n_writers, n_readers, n_groups]`` mask with::

    split = PositionSplit.parse("tokens", data)          # one group per token index: @0, @1, ...
    split = PositionSplit.parse("named", data)           # the task's named positions + 'other'
    split = PositionSplit.parse("IO,S2,END", data)       # some of them; the rest is 'other'
    split.labels(batch)                                  # [B, P] long, group index per token

Named positions are declared by the rows: a key ``<name>_pos`` holding a token index into the
prompt (negative counts from the end) names position ``<NAME>`` (``io_pos`` -> ``IO``); the
IOI task's rows carry ``io_pos``, ``s1_pos``, ``s2_pos`` and ``end_pos``. Groups are ordered by
their mean token index over the rows; tokens no name points at form the group ``other``.
Token-index groups need every prompt to have one length (the groups are then the same tokens
in every row). :meth:`PositionSplit.check` refuses data that does not fit, naming the row.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import AcdcError
from .tasks import Batch, TaskData

__all__ = ["PositionSplit", "OTHER", "named_positions"]

OTHER = "other"
"""The group of the tokens no named position points at."""

_SUFFIX = "_pos"


def named_positions(data: TaskData) -> list[tuple[str, str]]:
    """``(NAME, row key)`` of every named position the rows declare (keys ``<name>_pos`` with
    an integer in every row), ordered by mean token index."""
    out = []
    for key, values in data.extra.items():
        if key.endswith(_SUFFIX) and len(key) > len(_SUFFIX) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in values):
            mean = sum(v % len(c) for v, c in zip(values, data.clean)) / max(len(values), 1)
            out.append((mean, key[: -len(_SUFFIX)].upper(), key))
    return [(name, key) for _, name, key in sorted(out)]


@dataclass(frozen=True)
class PositionSplit:
    """How tokens are grouped: ``kind`` "tokens" (group ``i`` = token index ``i``) or "named"
    (``keys[i]`` holds group ``names[i]``'s token index per row; the last group is ``other``).
    ``names`` are the position-aware graph's groups."""

    kind: str
    names: tuple[str, ...]
    keys: tuple[str, ...] = ()

    @classmethod
    def parse(cls, spec: str, data: TaskData) -> PositionSplit | None:
        """The split a user asked for: ``""``/``"none"`` (None: no positions), ``"tokens"``,
        ``"named"`` (every named position of the task) or a comma list of names."""
        spec = (spec or "").strip()
        if spec.lower() in ("", "none"):
            return None
        if spec.lower() == "tokens":
            lengths = sorted({len(c) for c in data.clean})
            if len(lengths) != 1:
                named = ", ".join(n for n, _ in named_positions(data))
                raise AcdcError(
                    f"position-aware edges by token index need prompts of one length; task "
                    f"{data.task!r} has lengths {lengths[:8]}: " + (
                        f"use its named positions (--positions named: {named})" if named else
                        "use a task of one length, or rows with named positions "
                        "('<name>_pos' keys)"))
            return cls("tokens", tuple(str(i) for i in range(lengths[0])))
        declared = named_positions(data)
        if not declared:
            one = len({len(c) for c in data.clean}) == 1
            raise AcdcError(
                f"task {data.task!r} declares no named positions (row keys '<name>_pos' "
                "holding a token index, e.g. 'io_pos')" + (
                    "; use --positions tokens instead" if one else
                    "; add such keys to its rows (its prompts have several lengths, so token "
                    "positions do not apply either)"))
        if spec.lower() == "named":
            chosen = declared
        else:
            index = dict(declared)
            wanted = [s.strip().upper() for s in spec.split(",") if s.strip()]
            unknown = [w for w in wanted if w not in index]
            if unknown or len(set(wanted)) != len(wanted):
                raise AcdcError(
                    f"unknown or repeated position(s) {unknown or wanted} for task "
                    f"{data.task!r}: it names {', '.join(n for n, _ in declared)} (or use "
                    "'tokens', 'named', 'none')")
            chosen = [(n, index[n]) for n, _ in declared if n in wanted]
        if any(n == OTHER.upper() for n, _ in chosen):
            raise AcdcError(f"a named position may not be called {OTHER!r}")
        split = cls("named", tuple(n for n, _ in chosen) + (OTHER,), tuple(k for _, k in chosen))
        split.check(data)
        return split

    def check(self, data: TaskData) -> None:
        """Refuse rows this split cannot label: a prompt of another length (token groups), a
        missing or out-of-range index, two names on one token."""
        problems = []
        for i, ids in enumerate(data.clean):
            p = len(ids)
            if self.kind == "tokens":
                if p != len(self.names):
                    problems.append(f"row {i + 1}: {p} tokens, the split has {len(self.names)}")
                continue
            seen = {}
            for name, key in zip(self.names, self.keys):
                v = data.extra.get(key, [None] * len(data.clean))[i]
                if not isinstance(v, int) or not -p <= v < p:
                    problems.append(f"row {i + 1}: {key}={v!r} is not a token index of its "
                                    f"{p}-token prompt")
                elif v % p in seen:
                    problems.append(f"row {i + 1}: {seen[v % p]} and {name} are one token "
                                    f"({v % p})")
                else:
                    seen[v % p] = name
        if problems:
            raise AcdcError(f"task {data.task!r} does not fit the position split "
                            f"{','.join(self.names)}: " + "; ".join(problems[:5])
                            + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))

    def labels(self, batch: Batch) -> torch.Tensor:
        """``[B, P]`` long: the group index of every token of ``batch``."""
        b, p = batch.clean.shape
        device = batch.clean.device
        if self.kind == "tokens":
            if p != len(self.names):
                raise AcdcError(f"a batch of {p}-token prompts in a split of {len(self.names)} "
                                "token positions")
            return torch.arange(p, device=device).expand(b, p)
        out = torch.full((b, p), len(self.names) - 1, dtype=torch.long, device=device)
        rows = torch.arange(b, device=device)
        for g, key in enumerate(self.keys):
            out[rows, torch.as_tensor(batch.extra[key], device=device) % p] = g
        return out

    def describe(self) -> str:
        """One line for logs: ``named positions IO, S1, S2, END, other``."""
        what = "token positions" if self.kind == "tokens" else "named positions"
        return f"{what} {', '.join(self.names)}"
