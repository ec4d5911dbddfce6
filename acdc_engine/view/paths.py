"""Where the viewer's console may read and write files.

The console (``show circuit REF``, ``save circuit PATH``) takes paths from whoever drives the
page, so they are confined: a path is used only when its real location (``..`` and symlinks
resolved) lies inside the results folder (``$ACDC_RESULTS`` or ``./results``) or inside a run
directory or file given on the command line (``acdc view --run``) or by code
(:meth:`PathGuard.allow`). Anything else is refused with a message that names the path as typed
and never anything read from it. A relative path is taken from the working directory when that
lands inside, else from the results folder (so ``save circuit mine.json`` writes
``results/mine.json``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import AcdcError

__all__ = ["PathGuard", "OPEN", "RUN_FILES"]

RUN_FILES = ("run.json", "circuit.json", "edge_scores.tsv")
"""The files of a run directory the viewer reads; a run file given on the command line allows
these beside it too."""

_RUN_ID = re.compile(r"^[\w\-][\w.\-]*$")


def _real(p: Path) -> Path:
    return Path(os.path.realpath(p))


def _inside(p: Path, root: Path) -> bool:
    return p == root or root in p.parents


class PathGuard:
    """The folders and files a session's console may open (see the module). ``OPEN`` (no
    confinement) is what code calling ``session.circuit.load``/``save`` directly gets: it is
    the console, which takes text from the page, that is confined."""

    confined = True

    def __init__(self) -> None:
        self.dirs: list[Path] = []
        self.files: list[Path] = []
        self.given: list[Path] = []  # as given (for the messages)

    # ----- what is allowed ----------------------------------------------------------------
    @staticmethod
    def results() -> Path:
        from ..records.store import results_dir

        return _real(results_dir())

    def allow(self, path: str | Path) -> None:
        """Allow a run directory (and everything in it) or one file (with the run files beside
        it: run.json, circuit.json, edge_scores.tsv)."""
        p = _real(Path(path).expanduser())
        self.given.append(p)
        if p.is_dir():
            self.dirs.append(p)
        else:
            self.files += [p, *(p.parent / f for f in RUN_FILES)]

    def allowed(self, p: Path) -> bool:
        """Whether the real path ``p`` may be opened."""
        if not self.confined:
            return True
        return (any(_inside(p, d) for d in [self.results(), *self.dirs])
                or p in self.files)

    def where(self) -> str:
        extra = [str(g) for g in self.given]
        return f"the results folder {self.results()}" + (
            f" and {', '.join(extra)} (given when the viewer started)" if extra else "")

    # ----- resolving what the user typed --------------------------------------------------
    def resolve(self, ref: str, what: str = "read") -> Path:
        """The real path ``ref`` names, if it is allowed; an :class:`AcdcError` otherwise (it
        says where files may be, never what the refused path holds)."""
        if "\x00" in ref:
            raise AcdcError("a path cannot contain a NUL character")
        p = Path(ref).expanduser()
        tries = [p] if p.is_absolute() else [Path.cwd() / p, self.results() / p]
        for t in tries:
            real = _real(t)
            if self.allowed(real):
                return real
        hint = ("start acdc view with --run PATH to show a run from elsewhere"
                if what == "read" else "a relative path is taken from the results folder")
        raise AcdcError(f"{ref!r} is outside the folders the viewer may {what} ({self.where()}); "
                        f"{hint}, or set ACDC_RESULTS")

    def check(self, p: Path, what: str = "read") -> Path:
        """``p`` (a file found inside an allowed folder, e.g. a run's circuit.json) as a real
        path, refused when a symlink takes it outside."""
        real = _real(p)
        if not self.allowed(real):
            raise AcdcError(f"{p} leads outside the folders the viewer may {what} "
                            f"({self.where()}): a symlink? It was not opened")
        return real

    @staticmethod
    def is_run_id(ref: str) -> bool:
        """A bare name (no folder part) that could be a run id under the results folder."""
        return bool(_RUN_ID.match(ref)) and ref not in (".", "..")


class _Open(PathGuard):
    confined = False


OPEN = _Open()
"""A path guard that allows every path (for a session whose files are not confined)."""
