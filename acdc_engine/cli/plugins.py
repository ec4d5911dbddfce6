"""``acdc plugins``: plugins and what each provides."""

from __future__ import annotations

ORDER = 90

def _cmd_plugins(args) -> int:
    """Every plugin with what it provides; broken ones (failed to import) with why."""
    from ..plugins import providers, registry
    from ..plugins.manager import broken

    by_plugin = registry().by_plugin()
    for plugin, dist in sorted(providers().items()):
        print(f"{plugin}  ({dist})")
        for item in sorted(by_plugin.get(plugin, [])):
            print(f"    {item}")
    for plugin, (dist, why) in broken().items():
        print(f"{plugin}  ({dist})  BROKEN: {why}")
        print(f"    block it with ACDC_BLOCK_PLUGINS={plugin}")
    return 0


def register(sub) -> None:
    pl = sub.add_parser("plugins", help="list plugins and what each provides",
                        epilog="example: acdc plugins")
    pl.set_defaults(func=_cmd_plugins)
