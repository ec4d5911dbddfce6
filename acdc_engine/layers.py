"""The package's layers, written once: each top-level module of ``acdc_engine`` imports only
modules of its own layer or of the layers before it in :data:`LAYERS`.

``tests/layout/test_layers.py`` checks the imports against this list (no import points down
the list, no import cycle) and that docs/design.md's layer table names the same modules in the
same order. A new top-level module gets a place here (and a row's cell in design.md).
"""

from __future__ import annotations

__all__ = ["LAYERS", "layer_of"]

LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("base", frozenset({"errors", "progress", "resources", "extras", "buffers", "layers",
                       "model_files", "distributed"})),
    ("vocabulary", frozenset({"names", "graph", "circuit", "tasks", "metrics",
                             "positions"})),
    ("model adapters", frozenset({"models"})),
    ("patching", frozenset({"patching", "loading", "problem", "interventions"})),
    ("scoring", frozenset({"scoring"})),
    ("selection and evaluation", frozenset({"evaluation"})),
    ("records and pictures", frozenset({"records", "render"})),
    ("plugins", frozenset({"hookspecs", "plugins"})),
    ("evidence", frozenset({"evidence", "features"})),
    ("API and conformance kit", frozenset({"api", "testing", "pairs", "planning"})),
    ("CLI and viewer", frozenset({"view", "cli"})),
)
"""(name, top-level modules) per layer, top first; a module or package by its name in
``acdc_engine/`` (``graph`` for graph.py, ``models`` for models/)."""


def layer_of(module: str) -> int:
    """The index in :data:`LAYERS` of the top-level module ``module``."""
    for i, (_, names) in enumerate(LAYERS):
        if module in names:
            return i
    raise KeyError(f"{module!r} has no layer in acdc_engine.layers.LAYERS")
