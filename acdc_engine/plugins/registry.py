"""The typed registry: what the plugins provide, by name, and which plugin provided each.

:func:`registry` calls every registration hook through pluggy, one plugin at a time (a subset
hook caller per plugin), so ``ACDC_TRACE_HOOKS=1`` shows each call and every item is known by
the plugin that returned it. Each hook must return a list of one type (None counts as an empty
list); anything else, an item without a name, or a name two plugins both provide is refused
with a :class:`~acdc_engine.errors.PluginError` naming the plugin(s) and the hook.

The registry is rebuilt when the set of registered plugins changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pluggy

from ..errors import PluginError, UnknownNameError
from ..metrics import Metric
from ..models import ModelFamily, ShippedModel
from ..scoring.base import Method
from ..tasks import Task
from .manager import plugin_manager

__all__ = ["Registry", "registry"]


@dataclass(frozen=True)
class _Kind:
    """One registration hook: the registry table it fills and the type of its items."""

    table: str
    hook: str
    type: type
    what: str  # singular, for messages


KINDS = (
    _Kind("tasks", "acdc_tasks", Task, "task"),
    _Kind("metrics", "acdc_metrics", Metric, "metric"),
    _Kind("families", "acdc_model_families", ModelFamily, "model family"),
    _Kind("methods", "acdc_methods", Method, "method"),
    _Kind("shipped", "acdc_shipped_models", ShippedModel, "shipped model"),
)
_BY_TABLE = {k.table: k for k in KINDS}


@dataclass
class Registry:
    """What the plugins provide, by name, with the plugin that provided each.

    ``families`` is in the order models try them: plugins registered later first."""

    tasks: dict[str, Task] = field(default_factory=dict)
    metrics: dict[str, Metric] = field(default_factory=dict)
    families: dict[str, ModelFamily] = field(default_factory=dict)
    methods: dict[str, Method] = field(default_factory=dict)
    shipped: dict[str, ShippedModel] = field(default_factory=dict)
    provider: dict[tuple[str, str], str] = field(default_factory=dict)
    """``(table, name)`` -> the name of the plugin that provided it, e.g.
    ``provider[("tasks", "ioi")] == "tasks"``."""

    def get(self, kind: str, name: str):
        """The item ``name`` of table ``kind`` ("tasks", "metrics", ...); an unknown name is an
        :class:`UnknownNameError` listing the known ones."""
        table = getattr(self, kind)
        if name not in table:
            raise UnknownNameError(_BY_TABLE[kind].what, name, list(table))
        return table[name]

    def task(self, name: str) -> Task:
        return self.get("tasks", name)

    def metric(self, name: str) -> Metric:
        return self.get("metrics", name)

    def method(self, name: str) -> Method:
        return self.get("methods", name)

    def by_plugin(self) -> dict[str, list[str]]:
        """Plugin name -> what it provides, e.g. ``["model family gpt2", "shipped model
        tiny-ioi", ...]`` (sorted; for listings such as ``acdc plugins``)."""
        out: dict[str, list[str]] = {}
        for (table, name), plugin in self.provider.items():
            out.setdefault(plugin, []).append(f"{_BY_TABLE[table].what} {name}")
        return {plugin: sorted(items) for plugin, items in out.items()}

    def add(self, kind: _Kind, plugin: str, returned) -> None:
        """Check what ``plugin``'s ``kind.hook`` returned and add its items."""
        items = _checked(kind, plugin, returned)
        table = getattr(self, kind.table)
        for item in items:
            prev = self.provider.get((kind.table, item.name))
            if prev is not None:
                raise PluginError(
                    f"{kind.what} {item.name!r} is provided by both plugin {prev!r} and plugin "
                    f"{plugin!r}; block one with ACDC_BLOCK_PLUGINS={plugin}"
                )
            table[item.name] = item
            self.provider[(kind.table, item.name)] = plugin


def _checked(kind: _Kind, plugin: str, returned) -> list:
    """``returned`` if it is a list (or tuple) of named ``kind.type``; else a PluginError."""
    expected = f"expected a list of {kind.type.__name__}"
    if returned is None:
        return []
    if not isinstance(returned, (list, tuple)):
        raise PluginError(f"plugin {plugin!r} hook {kind.hook} returned a "
                          f"{type(returned).__name__}, {expected}")
    for i, item in enumerate(returned):
        if not isinstance(item, kind.type):
            raise PluginError(f"plugin {plugin!r} hook {kind.hook} returned a list whose item "
                              f"{i} is a {type(item).__name__}, {expected}")
        if not isinstance(item.name, str) or not item.name:
            raise PluginError(f"plugin {plugin!r} hook {kind.hook} returned a "
                              f"{kind.type.__name__} whose name is {item.name!r}, expected a "
                              f"non-empty str")
    return list(returned)


def _build(pm: pluggy.PluginManager) -> Registry:
    reg = Registry()
    plugins = pm.get_plugins()
    for kind in KINDS:
        # In pluggy's call order (plugins registered later first: so are their families when a
        # model is loaded). One subset caller per plugin: the call goes through pluggy (and its
        # tracing), and we know which plugin answered.
        for impl in getattr(pm.hook, kind.hook).get_hookimpls()[::-1]:
            others = [p for p in plugins if p is not impl.plugin]
            results = pm.subset_hook_caller(kind.hook, remove_plugins=others)()
            reg.add(kind, impl.plugin_name, results[0] if results else None)
    return reg


_CACHE: tuple[tuple, Registry] | None = None


def registry() -> Registry:
    """The merged registry of every loaded plugin (rebuilt when plugins come or go)."""
    global _CACHE
    pm = plugin_manager()
    key = (pm, *pm.list_name_plugin())  # holds the plugins: no id reuse while cached
    if _CACHE is None or _CACHE[0] != key:
        _CACHE = (key, _build(pm))
    return _CACHE[1]
