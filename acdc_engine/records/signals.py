"""SIGTERM and SIGHUP handled like Ctrl-C.

``timeout``, ``kill`` and batch schedulers stop a job with SIGTERM; closing a terminal sends
SIGHUP. Inside :func:`terminate_as_interrupt` either one raises :class:`Terminated`, a
``KeyboardInterrupt``, at the point the program was at, so everything that handles Ctrl-C
handles them too: the MLflow run and ``run.json`` are marked KILLED, the partial outputs and
an ACDC checkpoint are written. The command then exits with the shell's convention,
``128 + signal number`` (143 for SIGTERM, 129 for SIGHUP, 130 for Ctrl-C): see
:func:`exit_code`. A second signal while the first is being handled is ignored, so the
clean-up finishes.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

__all__ = ["Terminated", "terminate_as_interrupt", "exit_code"]

SIGNALS = tuple(getattr(signal, n) for n in ("SIGTERM", "SIGHUP") if hasattr(signal, n))


class Terminated(KeyboardInterrupt):
    """The process was asked to stop by a signal (``signum``); handled like Ctrl-C."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(f"stopped by {signal.Signals(signum).name}")


def exit_code(exc: BaseException) -> int:
    """``128 + signal``: 143 for SIGTERM, 129 for SIGHUP, 130 for Ctrl-C (SIGINT)."""
    return 128 + (exc.signum if isinstance(exc, Terminated) else signal.SIGINT)


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM and SIGHUP raise :class:`Terminated` (main thread only;
    elsewhere, or for a signal the process ignores, the block runs unchanged)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired: list[int] = []

    def handler(signum, frame):
        if fired:  # already stopping: let the clean-up finish
            return
        fired.append(signum)
        raise Terminated(signum)

    previous = {}
    for s in SIGNALS:
        if signal.getsignal(s) is signal.SIG_IGN:  # e.g. nohup: the user asked to ignore it
            continue
        previous[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
