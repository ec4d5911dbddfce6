"""The package's layers (acdc_engine/layers.py, the one list; docs/design.md shows it): every
import inside acdc_engine points to its own layer or one above, and no imports form a cycle.

A module may import modules of its own layer or of layers above it in LAYERS, never below
(function-level imports included). A new top-level module must be placed in a layer there.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import acdc_engine
from acdc_engine.layers import LAYERS

ROOT = Path(acdc_engine.__file__).parent
DESIGN = ROOT.parent / "docs" / "design.md"

LEVEL = {name: i for i, (_, names) in enumerate(LAYERS) for name in names}

# Import cycles that exist today, each to be removed by the issue that fixes it; the test fails
# on any other cycle, and on an entry here that is no longer a cycle (remove it then). None now:
# the last, acdc_engine.tasks <-> acdc_engine.task_rows (closed by a function-level import), went
# with the tasks/ package (issue 21 item 2).
KNOWN_CYCLES: set[frozenset[str]] = set()


def _top(module: Path) -> str:
    return module.relative_to(ROOT).parts[0].removesuffix(".py")


def _name(path: Path) -> str:
    """The dotted module name of ``path`` (a package by its ``__init__.py``)."""
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(dotted: str) -> bool:
    """Whether ``dotted`` (acdc_engine.x.y) is a module or package of acdc_engine."""
    base = ROOT.parent.joinpath(*dotted.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _type_checking_only(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _import_nodes(tree: ast.AST):
    """(import node, inside a function) for every import statement, skipping ``if
    TYPE_CHECKING:`` blocks (never run)."""
    stack = [(tree, False)]
    while stack:
        node, in_function = stack.pop()
        for child in ast.iter_child_nodes(node):
            if _type_checking_only(child):
                stack.extend((c, in_function) for c in child.orelse)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, in_function
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                      ast.Lambda))
            stack.append((child, inner))


def _module_imports(path: Path):
    """(line, inside a function, dotted acdc_engine module) of every import in ``path``: a
    ``from X import a`` names the module ``X.a`` when there is one, else ``X``."""
    package = _name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node, in_function in _import_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("acdc_engine."):
                    yield node.lineno, in_function, alias.name
            continue
        if node.level:  # relative: resolve against the module's package
            base = package[: len(package) - node.level + 1]
            parts = base + (node.module.split(".") if node.module else [])
        else:
            parts = node.module.split(".")
        if parts[0] != "acdc_engine":
            continue
        module = ".".join(parts)
        for alias in node.names:
            sub = f"{module}.{alias.name}"
            yield node.lineno, in_function, sub if _is_module(sub) else module


def _imports(path: Path):
    """(line, top-level acdc_engine module) of every import in ``path``."""
    for line, _, dotted in _module_imports(path):
        parts = dotted.split(".")
        if len(parts) > 1:
            yield line, parts[1]


def _modules():
    return sorted(ROOT.rglob("*.py"))


def test_every_module_has_a_layer():
    tops = {_top(p) for p in _modules() if p.name != "__init__.py" or p.parent != ROOT}
    tops.discard("__main__")
    assert tops <= set(LEVEL), f"place these in acdc_engine/layers.py: {sorted(tops - set(LEVEL))}"
    assert set(LEVEL) <= tops, f"no such modules, remove them from LAYERS: {set(LEVEL) - tops}"


def test_imports_point_down():
    bad = []
    for path in _modules():
        if path.parent == ROOT and path.name == "__init__.py":
            continue  # the package's lazy public API
        here = LEVEL[_top(path)]
        for line, target in _imports(path):
            if target in LEVEL and LEVEL[target] > here:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target} "
                           f"(layer {LEVEL[target]} > {here})")
    assert not bad, "imports pointing up:\n" + "\n".join(bad)


def _import_graph():
    """module -> {imported module: [(path:line, 'function'|'module' level)]}."""
    graph: dict[str, dict[str, list[str]]] = {}
    for path in _modules():
        src = _name(path)
        edges = graph.setdefault(src, {})
        for line, in_function, dst in _module_imports(path):
            if dst != src:
                where = f"{path.relative_to(ROOT.parent)}:{line}"
                edges.setdefault(dst, []).append(
                    f"{where} ({'function' if in_function else 'module'} level)")
    return graph


def _cycles(graph) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]

    def visit(root):
        work = [(root, iter(graph.get(root, ())))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(graph.get(w, ()))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = set()
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.add(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    """No cycle of imports between modules, counting imports inside functions: a cycle closed
    by a function-level import still ties the modules together at run time."""
    graph = _import_graph()
    cycles = set(_cycles(graph))
    new = cycles - KNOWN_CYCLES
    report = []
    for comp in sorted(new, key=sorted):
        report.append("cycle: " + ", ".join(sorted(comp)))
        for src in sorted(comp):
            for dst, where in sorted(graph[src].items()):
                if dst in comp:
                    report.extend(f"  {src} -> {dst}: {w}" for w in where)
    assert not new, "import cycles:\n" + "\n".join(report)
    fixed = KNOWN_CYCLES - cycles
    assert not fixed, f"no longer cycles, remove them from KNOWN_CYCLES: {fixed}"


def test_the_cycle_check_sees_function_level_imports():
    # a cycle closed by an import inside a function (as tasks <-> task_rows was, before the
    # tasks/ package) must be seen, or the check would miss every such cycle
    tree = ast.parse("from . import a\n\n\ndef f():\n    from . import b\n")
    assert [(n.lineno, inside) for n, inside in _import_nodes(tree)] == [(1, False), (5, True)]
    graph = {"p.a": {"p.b": ["p/a.py:5 (function level)"]},
             "p.b": {"p.a": ["p/b.py:1 (module level)"]}}
    assert _cycles(graph) == [frozenset({"p.a", "p.b"})]


def _design_layers() -> list[tuple[str, set[str]]]:
    """(layer, modules) of each row of design.md's layer table, in order."""
    rows = []
    for line in DESIGN.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("|") or len(cells) < 3 or cells[0] in ("layer", "---"):
            continue
        names = re.findall(r"`([A-Za-z_]+)(?:\.py|/)`", cells[1])
        rows.append((cells[0], set(names)))
    return rows


def test_design_md_shows_the_layer_list():
    want = [(name, set(names)) for name, names in LAYERS]
    assert _design_layers() == want, (
        "docs/design.md's layer table must list acdc_engine/layers.py's LAYERS, row by row: "
        + "; ".join(f"{n}: {', '.join(sorted(m))}" for n, m in want))
