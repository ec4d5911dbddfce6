"""acdc-engine: automated circuit discovery for transformer language models.

    from acdc_engine import discover
    result = discover(task="ioi")          # the shipped tiny-ioi model, EAP-IG
    print(result.summary())

The package is a stack of layers, each importing only those above it: the list is
``acdc_engine.layers.LAYERS`` (docs/design.md has the map).

Names below are imported on first use, so ``import acdc_engine`` (and ``acdc --help``) stays
fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "discover": "api", "evaluate_scores": "api", "DiscoveryResult": "api",
    "EvaluationResult": "api", "DiscoverConfig": "api", "RecordConfig": "api",
    "sweep": "api", "cross_faithfulness": "api",
    "load_model": "api.setup", "load_task": "api.setup", "build_problem": "api.setup",
    "Graph": "graph", "Node": "graph", "Edge": "graph", "NodeKind": "graph",
    "EdgeKind": "graph", "Circuit": "circuit", "Problem": "problem", "AcdcError": "errors",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'acdc_engine' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
