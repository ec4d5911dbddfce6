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
status 2; so are errors from the libraries underneath (torch, tokenizers, safetensors, json, the
operating system), which :func:`main` catches at this boundary and describes in one line, with
where they happened. ``ACDC_DEBUG=1`` shows their traceback instead.

Every command's ``--help`` ends with an example (its parser's ``epilog``). Shell completion
comes from argcomplete: ``eval "$(register-python-argcomplete acdc)"`` in bash or zsh.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback

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
    """The ``acdc`` argument parser, with one subcommand per module of this package."""
    from .. import __version__

    p = argparse.ArgumentParser(prog="acdc", description=__doc__.split("\n\n")[0])
    p.add_argument("--version", action="version", version=f"acdc-engine {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    for mod in _command_modules():
        mod.register(sub)
    return p


def _complete(parser: argparse.ArgumentParser) -> None:
    """Shell completion: argcomplete answers (and exits) when the shell asks, i.e. when
    ``_ARGCOMPLETE`` is set; otherwise nothing is imported."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    try:
        import argcomplete
    except ImportError:  # completion is a convenience: without it, no completions
        return
    argcomplete.autocomplete(parser)


def main(argv: list[str] | None = None) -> int:
    """Parse, run the command; one-line errors (exit 2), interruptions (Ctrl-C, SIGTERM,
    SIGHUP: the run is marked KILLED, exit 130/143/129)."""
    from ..records.signals import exit_code, terminate_as_interrupt

    parser = build_parser()
    _complete(parser)
    args = parser.parse_args(argv)
    try:
        with terminate_as_interrupt():
            return args.func(args)
    except AcdcError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"interrupted{f' ({e})' if str(e) else ''}", file=sys.stderr)
        return exit_code(e)
    except Exception as e:  # a library's or the OS's error: one line, not a traceback
        if _debug():
            raise
        print(f"error: {describe(e)} (ACDC_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2


def _debug() -> bool:
    return os.environ.get("ACDC_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def describe(e: BaseException) -> str:
    """One line for an unexpected error: what (the OS's words and the file for an OSError; the
    type and first line otherwise) and where (the innermost frame of acdc-engine's code, or of
    a plugin's)."""
    if isinstance(e, OSError) and e.strerror:
        files = [f for f in (e.filename, getattr(e, "filename2", None)) if f]
        what = f"{e.strerror}: {' -> '.join(str(f) for f in files)}" if files else e.strerror
    else:
        text = str(e).strip()
        first = text.splitlines()[0][:300] if text else ""
        what = f"{type(e).__name__}: {first}" if first else type(e).__name__
    where = _where(e)
    return f"{what} (in {where})" if where else what


def _where(e: BaseException) -> str | None:
    """``function (file.py:line)`` of the innermost frame of acdc-engine's code or a plugin's
    (a package named ``acdc_*``, or any file outside the standard library and site-packages)."""
    import sysconfig

    skip = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "purelib", "platlib")}
    here = None
    for fs in traceback.extract_tb(e.__traceback__):
        real = os.path.realpath(fs.filename)
        ours = f"{os.sep}acdc_" in real
        if ours or not any(real.startswith(s + os.sep) for s in skip):
            here = fs
    if here is None:
        return None
    return f"{here.name} ({os.path.basename(here.filename)}:{here.lineno})"
