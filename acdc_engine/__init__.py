"""acdc-engine: automated circuit discovery for transformer language models.

    from acdc_engine import discover
    result = discover(task="ioi")          # the shipped tiny-ioi model, EAP-IG
    print(result.summary())

Layers, each importing only those above it in this list (docs/design.md has the map):

    graph, circuit, tasks, metrics      vocabulary: nodes, edges, graphs, circuits, data
    models                              model adapters (the protocol families implement)
    patching, loading, problem          the patched forward; loading + self-check; Problem
    scoring                             EAP, EAP-IG, exact patching, ACDC (methods)
    evaluation                          faithfulness curves, ground truth, circuit comparison
    records, render                     MLflow and run directories; pictures
    plugins, hookspecs                  the plugin manager and the typed registry
    api                                 discover, evaluate_scores, compare, sweep
    cli                                 the ``acdc`` command

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
