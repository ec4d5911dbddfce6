"""Models shipped with a plugin: a name users type, the directory it loads from.

A plugin lists its shipped models through the ``acdc_shipped_models`` hook; the built-in loader
(``acdc_load_model``, run last) resolves such a name to its directory, loads it like any local
model and records the ground-truth circuit file, if there is one, in
``LoadedModel.info["ground_truth"]``::

    @hookimpl
    def acdc_shipped_models():
        return [ShippedModel("toy-induction", MODELS / "toy-induction",
                             ground_truth=MODELS / "toy-induction" / "ground_truth.json",
                             description="attention-only induction toy")]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["ShippedModel"]


@dataclass(frozen=True)
class ShippedModel:
    """A model directory (``save_pretrained`` layout) known by a short ``name``.

    ``ground_truth`` is the file of its known circuit (see :mod:`acdc_engine.evaluation.
    groundtruth`), or None when it has none."""

    name: str
    path: Path
    ground_truth: Path | None = None
    description: str = ""

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))
        if self.ground_truth is not None:
            object.__setattr__(self, "ground_truth", Path(self.ground_truth))
