"""docs/plugins.md and acdc_engine.hookspecs cannot drift apart (as datasette checks its docs).

Every hook spec appears in the docs as a heading with its exact signature, and every
``acdc_...(`` the docs mention is a hook that exists.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from acdc_engine import hookspecs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
SPEC_MARK = f"{hookspecs.PROJECT}_spec"  # the attribute pluggy's HookspecMarker sets

HOOKS = {name: f for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
         if hasattr(f, SPEC_MARK)}


@pytest.fixture(scope="module")
def docs() -> str:
    return DOCS.read_text()


@pytest.fixture(scope="module")
def headings(docs) -> set[str]:
    """Every markdown heading's text, without backticks."""
    return {m.group(1).replace("`", "").strip()
            for m in re.finditer(r"^#+\s+(.+?)\s*$", docs, flags=re.M)}


def test_there_are_hooks_to_document():
    assert {"acdc_tasks", "acdc_metrics", "acdc_model_families", "acdc_methods",
            "acdc_shipped_models", "acdc_load_model", "acdc_task_from_path"} <= set(HOOKS)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_hook_has_a_heading_with_its_exact_signature(name, headings):
    expected = f"{name}{inspect.signature(HOOKS[name])}"
    assert expected in headings, (
        f"docs/plugins.md has no heading {expected!r} "
        f"(headings naming it: {sorted(h for h in headings if name in h)})"
    )


def test_the_docs_name_no_hook_that_does_not_exist(docs):
    mentioned = set(re.findall(r"\b(acdc_\w+)\(", docs))
    assert mentioned, "the docs should show hooks as name(arguments)"
    assert mentioned <= set(HOOKS), f"not hooks: {sorted(mentioned - set(HOOKS))}"
