"""The viewer's layout: the Session owns its state (acdc_engine/view/state.py and session.py),
and no sub-view reaches into it. Every other module of view/ reads the session through public
properties and methods and changes it through ``session.changing(...)``; no module is a mixin
of Session."""

from __future__ import annotations

import ast
from pathlib import Path

import acdc_engine.view as view

VIEW = Path(view.__file__).parent
OWNERS = {"state.py", "session.py"}
"""The Session's own modules (SessionState and the verbs)."""


def _session_privates() -> set[str]:
    """Every ``self._name`` the Session's own modules use or define (dunders aside)."""
    names = set()
    for f in OWNERS:
        for node in ast.walk(ast.parse((VIEW / f).read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "self":
                names.add(node.attr)
            elif isinstance(node, (ast.FunctionDef, ast.AnnAssign)):
                name = node.name if isinstance(node, ast.FunctionDef) else \
                    getattr(node.target, "id", "")
                names.add(name)
    return {n for n in names if n.startswith("_") and not n.endswith("_")}


def test_no_sub_view_touches_a_private_attribute_of_the_session():
    private = _session_privates()
    assert {"_lock", "_steps", "_cache", "_summary", "_prefix", "_hooks"} <= private
    found = []
    for f in sorted(VIEW.glob("*.py")):
        if f.name in OWNERS:
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            # obj._name where obj is not the module's own `self` (a sub-view's own state)
            if isinstance(node, ast.Attribute) and node.attr in private and not (
                    isinstance(node.value, ast.Name) and node.value.id == "self"):
                found.append(f"{f.name}:{node.lineno}: .{node.attr}")
    assert not found, "sub-views reach into the Session's private state:\n" + "\n".join(found)


def test_sub_views_are_not_mixins_of_the_session():
    """Session's bases are its state only (CodeSide, a mixin that used the Session's private
    lock and hooks, is gone)."""
    from acdc_engine.view.session import Session
    from acdc_engine.view.state import SessionState

    assert Session.__bases__ == (SessionState,)
    assert SessionState.__bases__ == (object,)


def test_view_modules_stay_small():
    for f in VIEW.glob("*.py"):
        n = len(f.read_text().splitlines())
        assert n <= 400, f"{f.name} has {n} lines"
