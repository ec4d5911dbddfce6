"""``acdc plugins``: plugins and what each provides."""

from __future__ import annotations

ORDER = 90

def _cmd_plugins(args) -> int:
    from ..plugins import providers, registry

    by_plugin = registry().by_plugin()
    for plugin, dist in sorted(providers().items()):
        print(f"{plugin}  ({dist})")
        for item in sorted(by_plugin.get(plugin, [])):
            print(f"    {item}")
    return 0


def register(sub) -> None:
    pl = sub.add_parser("plugins", help="list plugins and what each provides")
    pl.set_defaults(func=_cmd_plugins)
