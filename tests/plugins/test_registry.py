"""The typed registry: wrong return types are refused naming the plugin, registration goes
through pluggy (so tracing sees it), shipped models load by name through the built-in loader."""

from __future__ import annotations

import json

import pytest

from acdc_engine import plugins
from acdc_engine.errors import PluginError
from acdc_engine.hookspecs import hookimpl
from acdc_engine.metrics import Metric
from acdc_engine.models import ShippedModel
from acdc_engine.tasks import Task


@pytest.fixture
def plugin():
    """Register a plugin object for one test: ``plugin(obj, name)``; unregistered after."""
    names = []

    def add(obj, name):
        names.append(plugins.register(obj, name=name))

    yield add
    for name in names:
        plugins.unregister(name)


class _ReturnsStr:
    @hookimpl
    def acdc_tasks(self):
        return "ioi"


class _WrongItem:
    @hookimpl
    def acdc_metrics(self):
        return [Metric("fine", lambda lg, b: lg[:, 0]), Task("not-a-metric", lambda n, s: [])]


class _Nameless:
    @hookimpl
    def acdc_tasks(self):
        return [Task("", lambda n, s: [])]


def test_a_hook_returning_a_str_is_refused_naming_plugin_and_hook(plugin):
    plugin(_ReturnsStr(), "stringy")
    with pytest.raises(PluginError, match=r"plugin 'stringy' hook acdc_tasks returned a str, "
                                          r"expected a list of Task"):
        plugins.registry()


def test_an_item_of_the_wrong_type_is_refused_naming_plugin_and_item(plugin):
    plugin(_WrongItem(), "mixed")
    with pytest.raises(PluginError, match=r"plugin 'mixed' hook acdc_metrics returned a list "
                                          r"whose item 1 is a Task, expected a list of Metric"):
        plugins.registry()


def test_an_item_without_a_name_is_refused(plugin):
    plugin(_Nameless(), "nameless")
    with pytest.raises(PluginError, match=r"plugin 'nameless' hook acdc_tasks .* non-empty str"):
        plugins.registry()


def test_the_registry_is_whole_again_once_the_bad_plugin_is_gone():
    plugins.register(_ReturnsStr(), name="stringy")
    plugins.unregister("stringy")
    assert "ioi" in plugins.registry().tasks


class _Typo:
    @hookimpl
    def acdc_taks(self):  # misspelled: no such hook
        return []


def test_an_unknown_hook_name_is_refused_at_registration():
    with pytest.raises(PluginError, match="typo"):
        plugins.register(_Typo(), name="typo")
    assert plugins.plugin_manager().get_plugin("typo") is None


def test_tables_are_typed_and_know_their_provider():
    from acdc_engine.models import ModelFamily
    from acdc_engine.scoring import Method

    reg = plugins.registry()
    assert all(isinstance(t, Task) for t in reg.tasks.values())
    assert all(isinstance(m, Metric) for m in reg.metrics.values())
    assert all(isinstance(f, ModelFamily) for f in reg.families.values())
    assert all(isinstance(m, Method) for m in reg.methods.values())
    assert all(isinstance(s, ShippedModel) for s in reg.shipped.values())
    assert reg.provider[("methods", "acdc")] == "builtins"
    assert reg.provider[("shipped", "tiny-ioi")] == "builtins"
    for name in ("tracr-reverse", "tracr-frac-prevs", "toy-induction"):
        assert reg.provider[("shipped", name)] == "tracr"
        assert reg.shipped[name].ground_truth.name == "ground_truth.json"
        assert reg.shipped[name].ground_truth.exists() and reg.shipped[name].path.is_dir()


def test_registration_hooks_show_in_the_trace(monkeypatch, capsys):
    """ACDC_TRACE_HOOKS=1: every registration call is traced, with the plugin it calls."""
    from acdc_engine.plugins import manager

    monkeypatch.setattr(manager, "_PM", None)  # a fresh manager reads the environment
    monkeypatch.setenv("ACDC_TRACE_HOOKS", "1")
    reg = plugins.registry()
    err = capsys.readouterr().err
    assert "ioi" in reg.tasks
    assert "[acdc hook] acdc_tasks() -> 'tasks'" in err
    assert "acdc_tasks returned [[Task('ioi'), Task('ioi-names'), " in err
    for hook in ("acdc_metrics", "acdc_model_families", "acdc_methods", "acdc_shipped_models"):
        assert f"[acdc hook] {hook}() -> 'builtins'" in err


def test_no_trace_without_the_variable(monkeypatch, capsys):
    from acdc_engine.plugins import manager

    monkeypatch.setattr(manager, "_PM", None)
    monkeypatch.delenv("ACDC_TRACE_HOOKS", raising=False)
    plugins.registry()
    assert "[acdc hook]" not in capsys.readouterr().err


class _Ships:
    def __init__(self, path, name="my-tiny", ground_truth=None):
        self.model = ShippedModel(name, path, ground_truth=ground_truth, description="test")

    @hookimpl
    def acdc_shipped_models(self):
        return [self.model]


def test_a_plugin_ships_a_model_the_builtin_loader_finds(plugin, gpt2_path, tmp_path):
    from acdc_engine import load_model

    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({"edges": ["input->logits"]}))
    plugin(_Ships(gpt2_path, ground_truth=gt), "ships")
    lm = load_model("my-tiny", device="cpu")
    assert lm.id == "my-tiny" and lm.family == "gpt2"
    assert lm.info["ground_truth"] == str(gt)


def test_a_shipped_name_two_plugins_use_is_refused_naming_both(plugin, gpt2_path):
    plugin(_Ships(gpt2_path, name="tiny-ioi"), "ships-again")
    both = (r"shipped model 'tiny-ioi' is provided by both plugin '(builtins|ships-again)' "
            r"and plugin '(ships-again|builtins)'")
    with pytest.raises(PluginError, match=both):
        plugins.registry()


def test_what_each_plugin_provides_is_listed_in_words():
    listing = plugins.registry().by_plugin()
    assert "model family gpt2" in listing["builtins"]
    assert "shipped model tiny-ioi" in listing["builtins"]
    assert "task ioi" in listing["tasks"]
    assert listing["tracr"] == sorted(listing["tracr"])
