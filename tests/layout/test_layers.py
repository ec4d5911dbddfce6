"""The package's layers (docs/design.md): every import inside acdc_engine points down.

A module may import modules of its own layer or of layers above it in LAYERS, never below
(function-level imports included). A new top-level module must be placed in a layer here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import acdc_engine

ROOT = Path(acdc_engine.__file__).parent

LAYERS = [
    {"errors", "progress", "resources", "extras", "buffers"},
    {"graph", "circuit", "tasks", "task_rows", "metrics", "positions"},
    {"models"},
    {"patching", "reads", "prefix", "token_groups", "grad_sink", "loading", "problem",
     "interventions"},
    {"scoring"},
    {"evaluation"},
    {"records", "render"},
    {"hookspecs", "plugins"},
    {"evidence"},
    {"api", "testing"},
    {"view", "cli"},
]
LEVEL = {name: i for i, names in enumerate(LAYERS) for name in names}


def _top(module: Path) -> str:
    return module.relative_to(ROOT).parts[0].removesuffix(".py")


def _imports(path: Path):
    """(line, top-level acdc_engine module) of every import in ``path``."""
    package = path.relative_to(ROOT.parent).with_suffix("").parts
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = list(package[: len(package) - node.level])
                if path.name == "__init__.py":
                    base = list(package[: len(package) - node.level + 1])
                parts = base + (node.module.split(".") if node.module else [])
                if not node.module:  # from . import x, y
                    for alias in node.names:
                        full = parts + [alias.name]
                        if len(full) > 1 and full[0] == "acdc_engine":
                            yield node.lineno, full[1]
                    continue
            else:
                parts = node.module.split(".")
            if parts[0] == "acdc_engine" and len(parts) > 1:
                yield node.lineno, parts[1]
            elif parts == ["acdc_engine"]:
                for alias in node.names:
                    if alias.name in LEVEL:
                        yield node.lineno, alias.name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "acdc_engine" and len(parts) > 1:
                    yield node.lineno, parts[1]


def test_every_module_has_a_layer():
    tops = {_top(p) for p in ROOT.rglob("*.py") if p.name != "__init__.py" or p.parent != ROOT}
    tops.discard("__main__")
    assert tops <= set(LEVEL), f"place these in LAYERS: {sorted(tops - set(LEVEL))}"


def test_imports_point_down():
    bad = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.parent == ROOT and path.name == "__init__.py":
            continue  # the package's lazy public API
        here = LEVEL[_top(path)]
        for line, target in _imports(path):
            if target in LEVEL and LEVEL[target] > here:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target} "
                           f"(layer {LEVEL[target]} > {here})")
    assert not bad, "imports pointing up:\n" + "\n".join(bad)
