"""The process-wide pluggy plugin manager: entry points, in-process plugins, blocking, tracing.

``plugin_manager()`` loads plugins once: entry points in the ``acdc_engine`` group (the
built-ins included) and, later, anything registered in-process with :func:`register`.

A plugin whose entry point fails to import (or to register) does not take the other commands
down: it is skipped with one warning on stderr naming the entry point, its distribution and how
to block it, and ``acdc plugins`` lists it as broken (:func:`broken`).

Environment variables (read when the manager is created)
    ``ACDC_BLOCK_PLUGINS``  comma-separated plugin names not to load.
    ``ACDC_TRACE_HOOKS``    set to 1 to print every hook call (with the plugins it calls) and
                            what it returned, to stderr.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

import pluggy

from .. import hookspecs
from ..errors import PluginError

__all__ = ["plugin_manager", "register", "unregister", "providers", "broken", "trace_hooks"]

_PM: pluggy.PluginManager | None = None
_DISTS: dict[str, str] = {}  # entry-point plugin name -> "distribution version"
_BROKEN: dict[str, str] = {}  # entry-point plugin name -> what went wrong (one line)


def plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, created and loaded on first use."""
    global _PM
    if _PM is None:
        pm = pluggy.PluginManager(hookspecs.PROJECT)
        pm.add_hookspecs(hookspecs)
        for name in filter(None, os.environ.get("ACDC_BLOCK_PLUGINS", "").split(",")):
            pm.set_blocked(name.strip())
        if os.environ.get("ACDC_TRACE_HOOKS", "").strip() not in ("", "0"):
            trace_hooks(pm)
        load_entry_points(pm)
        pm.check_pending()
        _PM = pm
    return _PM


def load_entry_points(pm: pluggy.PluginManager, group: str = hookspecs.PROJECT) -> int:
    """Load and register the plugins of entry-point ``group`` (what pluggy's
    ``load_setuptools_entrypoints`` does), skipping blocked names. One that fails to import or
    to register is left out with a warning and recorded in :func:`broken`; the others load.
    Returns the number loaded."""
    import importlib.metadata as md

    count = 0
    for dist in list(md.distributions()):
        for ep in dist.entry_points:
            if ep.group != group or pm.has_plugin(ep.name) or pm.is_blocked(ep.name):
                continue
            where = f"{dist.metadata['Name']} {dist.version}"
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as e:
                if pm.has_plugin(ep.name):
                    pm.unregister(name=ep.name)
                text = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
                _BROKEN[ep.name] = f"{type(e).__name__}: {text}".rstrip(": ")
                _DISTS[ep.name] = where
                print(f"warning: plugin {ep.name!r} (entry point '{ep.name} = {ep.value}' of "
                      f"{where}) failed to load: {_BROKEN[ep.name]}; it is skipped (block it "
                      f"with ACDC_BLOCK_PLUGINS={ep.name}, or uninstall "
                      f"{dist.metadata['Name']})", file=sys.stderr)
                continue
            _BROKEN.pop(ep.name, None)
            _DISTS[ep.name] = where
            count += 1
    return count


def broken() -> dict[str, tuple[str, str]]:
    """Entry-point plugins that failed to load: name -> (distribution, what went wrong)."""
    plugin_manager()
    return {name: (_DISTS.get(name, "?"), why) for name, why in sorted(_BROKEN.items())}


def register(plugin: object, name: str | None = None) -> str:
    """Register a plugin in-process (tests, notebooks); returns its name.

    The registry sees it at its next use (:func:`acdc_engine.plugins.registry`)."""
    pm = plugin_manager()
    try:
        got = pm.register(plugin, name=name)
        if got is None:
            raise PluginError(f"plugin {name or plugin!r} is blocked")
        pm.check_pending()  # a hook name no spec declares (a typo) is an error now
    except pluggy.PluginValidationError as e:
        if pm.is_registered(plugin):
            pm.unregister(plugin)
        raise PluginError(f"plugin {name or e.plugin!r} is not valid: {e}") from None
    return got


def unregister(name: str) -> None:
    """Remove the in-process (or entry-point) plugin ``name``; nothing if it is not loaded."""
    pm = plugin_manager()
    if pm.get_plugin(name) is not None:
        pm.unregister(name=name)


def providers() -> dict[str, str]:
    """Plugin name -> the distribution that provides it ("in-process" if none)."""
    pm = plugin_manager()
    return {name: _DISTS.get(name, "in-process") for name, p in pm.list_name_plugin()
            if p is not None and name not in _BROKEN}


def trace_hooks(pm: pluggy.PluginManager,
                write: Callable[[str], object] | None = None) -> Callable[[], None]:
    """Print every hook call of ``pm``: the hook, the plugins it calls, its keyword arguments,
    then what it returned (or raised). ``write`` defaults to the current ``sys.stderr``.

    Returns the function that turns tracing off again."""

    def out(text: str) -> None:
        (write or sys.stderr.write)(f"[acdc hook] {text}\n")

    def before(hook_name, impls, kwargs) -> None:
        plugins = ", ".join(repr(i.plugin_name) for i in impls) or "no plugin"
        args = ", ".join(f"{k}={_short(v)}" for k, v in kwargs.items())
        out(f"{hook_name}({args}) -> {plugins}")

    def after(outcome, hook_name, impls, kwargs) -> None:
        if outcome.exception is not None:
            out(f"{hook_name} raised {type(outcome.exception).__name__}: {outcome.exception}")
        else:
            out(f"{hook_name} returned {_short(outcome.get_result())}")

    return pm.add_hookcall_monitoring(before, after)


def _short(value, depth: int = 0) -> str:
    """A one-line description of a hook's argument or result (names, not full reprs)."""
    if isinstance(value, (list, tuple)) and depth < 2:
        return "[" + ", ".join(_short(v, depth + 1) for v in value) + "]"
    for attr in ("name", "id"):
        label = getattr(value, attr, None)
        if isinstance(label, str):
            return f"{type(value).__name__}({label!r})"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
