"""Plugins: discovery through entry points, in-process registration, duplicates, blocking."""

from __future__ import annotations

import inspect

import pytest

from acdc_engine import hookspecs, plugins
from acdc_engine.errors import PluginError, UnknownNameError
from acdc_engine.hookspecs import hookimpl
from acdc_engine.metrics import Metric
from acdc_engine.tasks import Task


def test_builtins_come_from_entry_points():
    reg = plugins.registry()
    assert reg.provider[("tasks", "ioi")] == "tasks"
    assert reg.provider[("families", "gpt2")] == "builtins"
    assert {"logit_diff", "prob_diff", "kl_div", "nll", "accuracy"} <= set(reg.metrics)
    assert {"eap", "eap-ig"} <= set(reg.methods)
    assert plugins.providers()["builtins"].startswith("acdc-engine ")


def test_every_hook_is_documented_with_how_it_is_called():
    specs = [f for name, f in inspect.getmembers(hookspecs, inspect.isfunction)
             if name.startswith("acdc_")]
    assert len(specs) >= 6
    for f in specs:
        doc = inspect.getdoc(f) or ""
        assert "Return" in doc and ("Called" in doc or "Stops" in doc), f.__name__


class _Extra:
    @hookimpl
    def acdc_tasks(self):
        return [Task("extra-task", lambda n, s: [], model="tiny-ioi")]

    @hookimpl
    def acdc_metrics(self):
        return [Metric("extra_metric", lambda lg, b: lg[:, 0])]


def test_in_process_registration_and_unregistration():
    plugins.register(_Extra(), name="extra")
    try:
        reg = plugins.registry()
        assert reg.provider[("tasks", "extra-task")] == "extra"
        assert "extra_metric" in reg.metrics
    finally:
        plugins.unregister("extra")
    assert "extra-task" not in plugins.registry().tasks


class _Duplicate:
    @hookimpl
    def acdc_tasks(self):
        return [Task("ioi", lambda n, s: [])]


def test_duplicate_names_are_refused_naming_both_plugins():
    plugins.register(_Duplicate(), name="dupe")
    try:
        both = r"task 'ioi' is provided by both plugin '(dupe|tasks)' and plugin '(tasks|dupe)'"
        with pytest.raises(PluginError, match=both):
            plugins.registry()
    finally:
        plugins.unregister("dupe")
    assert "ioi" in plugins.registry().tasks


def test_blocked_plugin_is_not_registered():
    pm = plugins.plugin_manager()
    pm.set_blocked("blocked-one")
    with pytest.raises(PluginError, match="blocked"):
        plugins.register(_Extra(), name="blocked-one")
    assert "extra-task" not in plugins.registry().tasks


def test_unknown_names_list_the_known_ones():
    with pytest.raises(UnknownNameError, match=r"unknown task 'nope' \(known: .*ioi"):
        plugins.registry().task("nope")
    with pytest.raises(UnknownNameError, match="unknown metric 'nope'"):
        plugins.registry().metric("nope")


def test_conformance_kit_on_builtins(gpt2):
    from acdc_engine.testing import check_metric, check_model

    for metric in plugins.registry().metrics.values():
        check_metric(metric)
    check_model(gpt2)


def test_conformance_kit_catches_a_wrong_adapter(gpt2_path):
    """A family whose adapter drops the attention bias must fail check_model."""
    from acdc_engine import load_model
    from acdc_engine.testing import check_model

    model = load_model(str(gpt2_path), device="cpu")
    model.adapter.attn_bias = lambda layer: None
    with pytest.raises(AssertionError, match="full circuit differs"):
        check_model(model)


def test_conformance_kit_catches_an_attn_write_that_mixes_up_the_heads(gpt2_path):
    """An attn_write whose sum is right but whose buffer swaps two heads' writes would give
    every edge from those heads the other's delta: check_model must fail on it."""
    from acdc_engine import load_model
    from acdc_engine.testing import check_model

    model = load_model(str(gpt2_path), device="cpu")
    real = model.adapter.attn_write

    def swapped(layer, q, k, v, out):
        total = real(layer, q, k, v, out)
        out[[0, 1]] = out[[1, 0]].clone()
        return total

    model.adapter.attn_write = swapped
    with pytest.raises(AssertionError, match="each head's write"):
        check_model(model)
