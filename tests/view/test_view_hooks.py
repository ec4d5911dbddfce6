"""Changes made from code reach the session (and so every open page) at once: hooks on the
model's modules, edits inside ``changing()``, and the interventions' clean-prefix reuse stays
exact when the model changes. (The model fixture is shared: every hook is removed again.)"""

from __future__ import annotations

import pytest
import torch

from acdc_engine.errors import AcdcError
from acdc_engine.interventions import InterventionStack, evaluate_interventions

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _zero(module, inputs, output):
    return torch.zeros_like(output)


def _fresh(s) -> float:
    """The metric under the session's stack, recomputed without any of its caches."""
    s.problem.clear_cache()
    return float(evaluate_interventions(s.problem, InterventionStack(s.graph,
                                                                     list(s.stack.items))).mean())


def test_a_hook_re_evaluates_and_removing_it_restores(view_session):
    s = view_session
    clean, v = s.summary.metric, s.version
    expected = s.ablate("m1").metric  # zeroing the MLP's output is its zero ablation
    s.reset()
    h = s.hook("transformer.h.1.mlp", _zero)
    try:
        assert h.fired and s.hooks == ["transformer.h.1.mlp"]
        assert s.version > v and s.log[-1] == "hook on transformer.h.1.mlp"
        assert s.summary.metric == pytest.approx(expected, rel=1e-5, abs=1e-5)
        assert s.summary.metric != pytest.approx(clean, abs=1e-3)
        assert "hook on transformer.h.1.mlp (from code)" in s.state()["steps"]
        assert "hook on transformer.h.1.mlp (from code)" in s._repr_html_()
        # interventions on top of the hook: the clean prefix was recomputed with the hook on
        got = s.ablate("a1.0").metric
        assert got == pytest.approx(_fresh(s), rel=1e-5, abs=1e-5)
    finally:
        h.remove()
    assert s.hooks == [] and s.log[-1] == "hook on transformer.h.1.mlp removed"
    s.reset()
    assert s.summary.metric == pytest.approx(clean, rel=1e-5, abs=1e-6)
    with pytest.raises(AcdcError, match="already removed"):
        h.remove()


def test_hook_through_an_nnsight_envoy_as_a_context_manager(view_session):
    s = view_session
    clean = s.summary.metric
    with s.hook(s.model.nn.transformer.h[0].mlp, _zero) as h:
        assert h.name == "transformer.h.0.mlp"
        inside = s.summary.metric
        assert inside != pytest.approx(clean, abs=1e-3)
    assert s.hooks == [] and s.summary.metric == pytest.approx(clean, rel=1e-5, abs=1e-6)
    calls = []
    with s.hook("transformer.h.0.ln_1", lambda m, inputs: calls.append(1), pre=True):
        assert calls  # a pre-hook that changes nothing runs and leaves the metric
        assert s.summary.metric == pytest.approx(clean, rel=1e-5, abs=1e-6)


def test_bad_hooks_are_refused_and_the_session_keeps_its_state(view_session):
    s = view_session
    s.ablate("a0.0")
    before, steps = s.summary.metric, s.steps
    with pytest.raises(AcdcError, match="never ran.*hookable: .*transformer.h.0.mlp"):
        s.hook("transformer.h.0.attn", _zero)  # GPT-2 heads are computed from the weights
    with pytest.raises(AcdcError, match="no module 'transformer.h.9'"):
        s.hook("transformer.h.9", _zero)
    with pytest.raises(AcdcError, match="is not a module"):
        s.hook(torch.nn.Linear(2, 2), _zero)

    def broken(module, inputs, output):
        raise RuntimeError("boom")

    with pytest.raises(AcdcError, match="the hook on transformer.h.1.mlp failed: .*boom"):
        s.hook("transformer.h.1.mlp", broken)
    assert s.hooks == [] and s.steps == steps
    assert s.summary.metric == pytest.approx(before, rel=1e-5, abs=1e-6)


def test_changing_the_weights_notifies(view_session):
    s = view_session
    clean, v = s.summary.metric, s.version
    w = s.model.hf.transformer.h[1].mlp.c_proj.weight
    saved = w.detach().clone()
    try:
        with torch.no_grad(), s.changing("scaled m1's output weights"):
            w.mul_(3.0)
        assert s.version == v + 1 and s.log[-1] == "scaled m1's output weights"
        assert s.summary.metric != pytest.approx(clean, abs=1e-3)
        assert s.ablate("a0.1").metric == pytest.approx(_fresh(s), rel=1e-5, abs=1e-5)
    finally:
        with torch.no_grad():
            w.copy_(saved)
        s.notify("weights restored")
    s.reset()
    assert s.summary.metric == pytest.approx(clean, rel=1e-5, abs=1e-6)


def test_interventions_through_the_prefix_are_exact(view_session):
    """Every node and a few edges: the session's (prefix-reusing, fast-path) evaluation equals
    a fresh evaluation."""
    s = view_session
    for target in ["a0.0", "m0", "a1.1", "m1", "a1.0->logits", "input->a1.1<q>", "a0.1->m1"]:
        for source in ("zero", "mean", "corrupted"):
            got = s.intervene(f"ablate {target} {source}").metric
            assert got == pytest.approx(_fresh(s), rel=1e-5, abs=1e-5), (target, source)
    assert len(s._prefix) == len(s.problem.batches)
    s.clear_cache()  # evaluations only: the clean prefix stays (it changes with the model)
    assert len(s._prefix) == len(s.problem.batches)
    s.clear_cache(prefix=True)
    assert len(s._prefix) == 0
    assert s.intervene("ablate a1.0 zero").metric == pytest.approx(_fresh(s), rel=1e-5,
                                                                  abs=1e-5)


def test_changes_from_code_show_in_an_open_page(served, view_session, page):
    """A page already open in Chromium follows a hook, an ablation and their removal made from
    Python, with no notify()."""
    s = view_session
    page.goto(served.url)
    page.wait_for_selector("#map rect[data-node='a1.0']")
    page.wait_for_function("document.querySelector('#live').classList.contains('on')")
    shown = page.inner_text("#metric-value")
    h = s.hook("transformer.h.1.mlp", _zero)
    try:
        page.wait_for_selector("#interventions li:has-text('hook on transformer.h.1.mlp')")
        page.wait_for_function("(old) => document.querySelector('#metric-value').textContent "
                               "!= old", arg=shown)
        assert float(page.inner_text("#metric-value")) == pytest.approx(s.summary.metric,
                                                                        rel=1e-3, abs=1e-3)
        s.ablate("a0.1")
        page.wait_for_selector("#interventions li:has-text('ablate a0.1 zero')")
    finally:
        h.remove()
    page.wait_for_function("!document.querySelector('#interventions').textContent"
                           ".includes('hook on')")
    s.undo()
    page.wait_for_selector("#interventions li:has-text('none')")
    assert float(page.inner_text("#metric-value")) == pytest.approx(float(shown), abs=1e-3)
    assert page.errors == []
