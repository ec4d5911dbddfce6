"""Plugins: the pluggy manager (:mod:`.manager`) and the typed registry (:mod:`.registry`).

    plugin_manager()          the process-wide pluggy manager (entry points loaded once)
    registry()                tasks, metrics, model families, methods and shipped models by name
    register(obj, name)       add a plugin in-process (tests, notebooks); unregister(name)
    providers()               plugin name -> the distribution that provides it

Hook specifications: :mod:`acdc_engine.hookspecs`; how to write a plugin: docs/plugins.md.
``ACDC_BLOCK_PLUGINS`` blocks plugins by name, ``ACDC_TRACE_HOOKS=1`` traces hook calls.
"""

from .manager import plugin_manager, providers, register, unregister
from .registry import Registry, registry

__all__ = ["plugin_manager", "registry", "register", "unregister", "providers", "Registry"]
