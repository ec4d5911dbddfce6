"""Fixtures of the viewer's tests: a session on the tiny random GPT-2, a served copy of it,
and a headless Chromium (the system's, through Playwright; skipped when either is missing)."""

from __future__ import annotations

import os
import shutil

import pytest

CHROMIUM = os.environ.get("ACDC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture
def view_session(gpt2):
    """A fresh session: the tiny GPT-2 on 12 random clean/corrupted pairs, logit difference."""
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.tasks import prepare
    from acdc_engine.testing import random_pairs
    from acdc_engine.view import Session

    data = prepare("toy", gpt2.tokenizer, random_pairs(12, seed=3))
    problem = Problem.build(gpt2, data, registry().metric("logit_diff"), "corrupted")
    return Session(gpt2, problem, data, task="toy", name="gpt2-tiny on toy")


@pytest.fixture
def served(view_session):
    server = view_session.serve()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM} (install Debian's chromium, or set "
                    "ACDC_CHROMIUM)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="pip install playwright (the system Chromium is used)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser):
    # Playwright's wait_for_function evaluates its predicate with eval, which the page's
    # Content-Security-Policy forbids; test_view_security.py drives the page under its real
    # policy (strict_page) with selectors only.
    ctx = browser.new_context(viewport={"width": 1300, "height": 900}, bypass_csp=True)
    pg = ctx.new_page()
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    ctx.close()


@pytest.fixture
def strict_page(browser):
    """A page under the server's own Content-Security-Policy (no bypass)."""
    ctx = browser.new_context(viewport={"width": 1300, "height": 900})
    pg = ctx.new_page()
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(str(e)))
    yield pg
    ctx.close()


@pytest.fixture(scope="module")
def gpt2_other(tmp_path_factory):
    """The tiny GPT-2's shape with other weights (a stand-in for a fine-tuned model)."""
    from acdc_engine import load_model
    from acdc_engine.testing import save_gpt2

    return load_model(str(save_gpt2(tmp_path_factory.mktemp("gpt2-other"), seed=5)),
                      device="cpu")


@pytest.fixture
def compared(view_session, gpt2_other):
    """``view_session`` with a second model on the same task."""
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.view import Session

    data = view_session.data
    problem = Problem.build(gpt2_other, data, registry().metric("logit_diff"), "corrupted")
    view_session.compare_with(Session(gpt2_other, problem, data, task="toy"))
    return view_session
