"""``--workers N``: torchrun's own launcher on this machine, with one line for a failed rank.

    code = launch(["acdc_engine.cli", "discover", "--task", "ioi"], workers=2)

:func:`launch` runs ``torch.distributed.run`` (the code behind ``torchrun``) in this process
with ``--standalone --nproc-per-node N --max-restarts 0``: its elastic agent starts the ranks
as ``python -m MODULE ARGS`` with one thread each (``OMP_NUM_THREADS=1``; a command's own
``--threads`` still sets its rank's) and,
when one fails, stops the others. The agent's own multi-line report is replaced by one line
naming the rank that failed first and why (its error, or the signal that killed it).

A rank started by :func:`launch` (``ACDC_LAUNCHED=1`` in its environment) leaves its one-line
error to the launcher (:func:`report_failure` writes it to torchelastic's error file), so a
job prints the error once, not once per rank.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from ..errors import AcdcError

__all__ = ["launch", "report_failure", "LAUNCHED"]

LAUNCHED = "ACDC_LAUNCHED"
"""Set in the environment of the ranks :func:`launch` starts."""


def launch(args: list[str], workers: int, module: bool = True,
           threads: int | None = None) -> int:
    """Run ``python -m args[0] args[1:]`` (``module=False``: ``python args...``) as ``workers``
    ranks on this machine; 0 when every rank succeeded, else the first failure's exit code
    (128 + signal for a killed rank) after one line on stderr naming it. ``threads``: per
    rank (default 1)."""
    if workers < 1:
        raise AcdcError(f"--workers must be at least 1, got {workers}")

    env = {"OMP_NUM_THREADS": str(threads or 1), "MKL_NUM_THREADS": str(threads or 1),
           LAUNCHED: "1",  # c10d's C++ log prints stack traces of errors the line names
           "TORCH_CPP_LOG_LEVEL": os.environ.get("TORCH_CPP_LOG_LEVEL", "FATAL")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the ranks inherit this process's environment
    try:
        return _run(args, workers, module)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(args: list[str], workers: int, module: bool) -> int:
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    for name in ("torch.distributed.elastic", "torch.distributed.run",
                 "torch.distributed.launcher"):
        logging.getLogger(name).setLevel(logging.CRITICAL)  # the agent's chatter
    argv = ["--standalone", f"--nproc-per-node={workers}", "--max-restarts=0",
            "--monitor-interval=0.2", *(["-m"] if module else []), *args]
    try:
        torchrun.run(torchrun.get_args_parser().parse_args(argv))
    except ChildFailedError as e:
        rank, failure = first_failure(e.failures)
        msgs = {_message(f) for f in e.failures.values()}
        who = (f"every rank ({workers})" if len(e.failures) == workers and len(msgs) == 1
               and None not in msgs else f"rank {rank} of {workers}")
        print(f"error: {who} failed: {why(failure)}; the job was stopped", file=sys.stderr)
        return 128 - failure.exitcode if failure.exitcode < 0 else (failure.exitcode or 1)
    return 0


def first_failure(failures: dict) -> tuple[int, object]:
    """The failure to report: the agent lists first the ranks that failed by themselves and
    then those it stopped (SIGTERM) or that lost a peer; the first of the former (its own
    error or signal), else the first listed."""
    def caused(f) -> bool:  # stopped by the agent, or failed because another rank did
        msg = _message(f) or ""
        return f.exitcode == -15 or msg.startswith("stopped by") or "left the job" in msg
    items = list(failures.items())
    return next(((r, f) for r, f in items if not caused(f)), items[0])


def _message(failure) -> str | None:
    msg = failure.message
    if isinstance(msg, dict):
        msg = msg.get("message")
    if not msg or str(msg).startswith(("To enable traceback", "Signal ")):
        return None
    return str(msg)


def why(failure) -> str:
    """One line: the rank's error, or the signal that ended it, or its exit code."""
    if failure.exitcode < 0:
        return f"killed by {failure.signal_name()} (pid {failure.pid})"
    msg = _message(failure)
    if msg:
        return msg.strip().splitlines()[0][:400]
    return f"exit code {failure.exitcode} (pid {failure.pid})"


def report_failure(message: str) -> bool:
    """In a rank started by :func:`launch`, write ``message`` (one line) for the launcher and
    return True (the caller then prints nothing); elsewhere False."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if os.environ.get(LAUNCHED) != "1" or not path:
        return False
    data = {"message": {"message": message,
                        "extraInfo": {"py_callstack": "", "timestamp": str(int(time.time()))}}}
    try:
        with open(path, "w") as f:
            json.dump(data, f)
    except OSError:
        return False
    return True
