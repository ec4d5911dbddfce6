"""The page in a real headless Chromium: click a head, read the metric, QK/OV, console, tabs."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _metric(page) -> float:
    return float(page.inner_text("#metric-value"))


def _open(page, url):
    page.goto(url)
    page.wait_for_selector("#map rect[data-node='a1.0']")
    page.wait_for_function("document.querySelector('#live').classList.contains('on')")


def test_click_a_head_ablates_it(served, view_session, page):
    _open(page, served.url)
    before = _metric(page)
    assert abs(before - view_session.summary.metric) < 1e-3
    shown = page.inner_text("#metric-value")
    page.click("#map rect[data-node='a1.0']")
    page.wait_for_selector("#interventions li:has-text('ablate a1.0 zero')")
    page.wait_for_function("(old) => document.querySelector('#metric-value').textContent != old",
                           arg=shown)
    after = _metric(page)
    assert view_session.interventions == ["ablate a1.0 zero"]
    assert abs(after - view_session.summary.metric) <= 1e-3 * max(1, abs(after))
    assert after != pytest.approx(before, abs=1e-3)
    assert "zero" in page.get_attribute("#map rect[data-node='a1.0']", "class")
    page.click("#map rect[data-node='a1.0']")  # a second click restores the head
    page.wait_for_selector("#interventions li:has-text('none')")
    assert view_session.interventions == [] and page.errors == []


def test_toggle_qk_and_ov(served, page):
    _open(page, served.url)
    page.fill("#head-node", "a1.1")
    page.click("#mode-qk")
    page.wait_for_selector("#heads-view svg[data-head='a1.1']")
    n_cells = page.locator("#heads-view svg[data-head='a1.1'] rect").count()
    assert n_cells == 6 * 7 // 2  # 6 tokens, causal: the lower triangle
    page.click("#mode-ov")
    page.wait_for_selector("#ov-view")
    assert "promotes" in page.inner_text("#ov-view")
    assert page.locator("#heads-view svg").count() == 0
    page.click("#mode-qk")
    page.wait_for_selector("#heads-view svg[data-head='a1.1']")
    page.click("#mode-ov")
    page.wait_for_selector("#ov-view")
    box = page.locator("#console-input")
    box.fill("lens 0")  # the lens tab stays in front while the OV view refreshes quietly
    box.press("Enter")
    page.wait_for_selector("#lens-table")
    box.fill("ablate a0.0")
    box.press("Enter")
    page.wait_for_selector("#interventions li:has-text('ablate a0.0')")
    page.wait_for_timeout(300)
    assert page.is_visible("#lens-table") and not page.is_visible("#ov-view")


def test_console_verbs_and_bad_input(served, view_session, page):
    _open(page, served.url)
    box = page.locator("#console-input")
    box.fill("patch a0.* from corrupted")
    box.press("Enter")
    page.wait_for_selector("#interventions li:has-text('patch a0.* from corrupted')")
    assert view_session.interventions == ["patch a0.0 corrupted", "patch a0.1 corrupted"]
    box.fill("ablate a9.9")
    box.press("Enter")
    page.wait_for_selector("#console-log .err")
    assert "no node 'a9.9'" in page.inner_text("#console-log .err")
    assert "no node 'a9.9'" in page.inner_text("#error")
    box.fill("show circuit deadbeef-no-run")
    box.press("Enter")
    page.wait_for_function("document.querySelectorAll('#console-log .err').length == 2")
    assert "no run 'deadbeef-no-run'" in page.locator("#console-log .err").nth(1).inner_text()
    assert "Traceback" not in page.inner_text("body")
    assert len(view_session.interventions) == 2  # the state is kept
    box.fill("lens 1")
    box.press("Enter")
    page.wait_for_selector("#lens-table")
    assert page.locator("#lens-table tr").count() == 1 + 3  # header, embed, L0, L1
    box.press("ArrowUp")
    assert box.input_value() == "lens 1"


def test_two_tabs_see_each_other(served, view_session, page, browser):
    _open(page, served.url)
    other = browser.new_context().new_page()
    _open(other, served.url)
    page.click("#map rect[data-node='m0']")
    other.wait_for_selector("#interventions li:has-text('ablate m0 zero')")
    assert "zero" in other.get_attribute("#map rect[data-node='m0']", "class")
    view_session.freeze("a0.1")  # from code (a notebook): both tabs follow
    for p in (page, other):
        p.wait_for_selector("#interventions li:has-text('freeze a0.1')")
    other.context.close()


def test_page_works_behind_a_token(view_session, page):
    server = view_session.serve(token="t0k")
    try:
        _open(page, server.url)  # the URL carries ?token=...; every request the page makes too
        page.click("#map rect[data-node='a0.0']")
        page.wait_for_selector("#interventions li:has-text('ablate a0.0 zero')")
        assert page.errors == []
        page.goto(server.url.split("?")[0])
        assert "a token is needed" in page.inner_text("body")
    finally:
        server.stop()
