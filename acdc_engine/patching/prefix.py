"""Reusing the clean run's residual stream: a run without gradients starts at the first layer
with a removed edge (:class:`Prefix`, handed to :func:`acdc_engine.patching.run` in its
``Context(prefix=...)``).
"""

from __future__ import annotations

import torch

from ..models.adapter import ModelAdapter

__all__ = ["Prefix"]


class Prefix:
    """The clean run's residual stream at the start of each layer, per input, for one adapter.

    In a run whose context holds it, a run without gradients, collection, fixed delta or replaced
    embeddings starts at the layer of the first writer with a removed edge, from the residual
    stream a clean run of the same ``input_ids`` left there (every writer before that layer
    computes exactly what it computes in the clean run), and fills in what it passes through;
    a clean run is then only its unembedding. Holds ``n_layers + 1`` tensors [b, p, d] per
    input. Stale once the model changes (a hook, new weights): :meth:`clear` it then.
    """

    def __init__(self, adapter: ModelAdapter):
        self.adapter = adapter
        self._entries: list[tuple[torch.Tensor, dict[int, torch.Tensor]]] = []

    def states(self, input_ids: torch.Tensor) -> dict[int, torch.Tensor]:
        """layer -> residual stream [b, p, d] at its start (``n_layers``: after the last) of
        the clean run on ``input_ids``; a new (empty) entry for new inputs."""
        for ids, states in self._entries:
            if (ids.shape == input_ids.shape and ids.device == input_ids.device
                    and torch.equal(ids, input_ids)):
                return states
        self._entries.append((input_ids.detach().clone(), {}))
        return self._entries[-1][1]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
