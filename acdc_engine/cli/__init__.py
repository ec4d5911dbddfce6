"""The ``acdc`` command: a thin layer over the Python API.

    acdc discover                       # shipped tiny-ioi model on the ioi task, EAP-IG
    acdc discover --method eap --edges 50 --out results/my-run
    acdc evaluate --scores RUN_ID       # faithfulness curve, CPR and CMD of saved scores
    acdc runs --experiment ioi          # recent runs with their key metrics
    acdc graph --model path/to/hf-model # node and edge counts
    acdc sweep --n-trials 20            # optuna: methods x settings, Pareto front
    acdc plugins                        # what is registered, and by which package

Each command lives in its own module of this package with a ``register(subparsers)`` function
and an ``ORDER`` (its place in ``acdc --help``); modules are found by name, so a new command
is a new module. Errors the user can fix are printed as one line (``error: ...``) with exit
status 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from ..errors import AcdcError

__all__ = ["build_parser", "main"]


def _command_modules():
    mods = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "args":
            continue
        mod = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(mod, "register"):
            mods.append(mod)
    return sorted(mods, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    p = argparse.ArgumentParser(prog="acdc", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"acdc-engine {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for mod in _command_modules():
        mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse, run the command; one-line errors (exit 2), interruptions (Ctrl-C, SIGTERM,
    SIGHUP: the run is marked KILLED, exit 130/143/129)."""
    from ..records.signals import exit_code, terminate_as_interrupt

    args = build_parser().parse_args(argv)
    try:
        with terminate_as_interrupt():
            return args.func(args)
    except AcdcError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"interrupted{f' ({e})' if str(e) else ''}", file=sys.stderr)
        return exit_code(e)
