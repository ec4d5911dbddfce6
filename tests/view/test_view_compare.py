"""Two models side by side: head patterns and their change, circuits' differences, the page."""

from __future__ import annotations

import pytest
import torch


def test_compare_heads_and_circuits(compared):
    s = compared
    out = s.command("compare a1.0 2")
    assert out["ok"], out["message"]
    h = out["view"]["heads"][0]
    a, b, diff = (torch.tensor(h[k]) for k in ("a", "b", "diff"))
    assert torch.allclose(diff, b - a, atol=1e-6)
    assert abs(h["max_change"] - float(diff.abs().max())) < 1e-6 and h["max_change"] > 0
    assert torch.allclose(a, torch.tensor(s.inspect.qk("a1.0", 2)["heads"][0]["pattern"]))
    assert not s.command("compare circuits")["ok"]  # no circuits yet: a message, no change
    s.circuit.discover("eap", 8)
    s.other.circuit.discover("eap", 8)
    c = s.command("compare circuits")["compare"]
    assert set(c["both"]) | set(c["only_a"]) == set(s.circuit.current.edge_names)
    assert set(c["both"]) | set(c["only_b"]) == set(s.other.circuit.current.edge_names)
    state = s.state()["compare"]
    assert state["model"] == s.other.model.id and state["circuit"]["n_edges"] <= 8


def test_compare_without_a_second_model(view_session):
    out = view_session.command("compare a1.0")
    assert not out["ok"] and "no second model" in out["message"]


@pytest.mark.slow
def test_page_shows_both_models(compared, page):
    server = compared.serve()
    try:
        page.goto(server.url)
        page.wait_for_selector("#compare-card:not([hidden])")
        assert compared.other.model.id in page.inner_text("#compare-card")
        page.fill("#head-node", "a0.1")
        page.click("#compare-head")
        page.wait_for_selector("#compare-view")
        assert page.locator("#heads-view svg.heat").count() == 3  # a, b, change
        assert page.errors == []
    finally:
        server.stop()
