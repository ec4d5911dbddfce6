"""Shared argument types and option groups of the ``acdc`` commands.

Types check a value when the command line is parsed, before anything heavy is imported, so a
nonsense option fails at once with argparse's usage message (exit status 2).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..errors import AcdcError


def count(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def positive(text: str) -> int:
    """argparse type: a whole number >= 1."""
    n = count(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def at_most(limit: int, why: str = "", at_least: int = 0):
    """argparse type: a whole number from ``at_least`` to ``limit`` (``why`` says what a larger
    one would cost), so a typo such as ``-n 100000`` fails at once instead of running for days."""
    def parse(text: str) -> int:
        n = count(text)
        if n < at_least:
            raise argparse.ArgumentTypeError(f"must be at least {at_least}, got {n}")
        if n > limit:
            raise argparse.ArgumentTypeError(f"must be at most {limit}{why}, got {n}")
        return n

    parse.__name__ = "count"
    return parse


MAX_SUBSAMPLES = 100  # each is a whole rediscovery of the circuit
MAX_BOOT = 100_000
subsamples = at_most(MAX_SUBSAMPLES, " (each subsample is a whole rediscovery of the circuit)")
boot = at_most(MAX_BOOT, " (the intervals do not change past a few thousand)", at_least=1)


def finite(text: str) -> float:
    """argparse type: a finite number."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return x


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    x = finite(text)
    if not x > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {x:g}")
    return x


def fraction(text: str) -> float:
    """argparse type: a number in (0, 1]."""
    x = finite(text)
    if not 0 < x <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {x:g}")
    return x


def model_ref(text: str) -> str:
    """argparse type for ``--model``: a shipped name, hub id or local directory. A path (one
    that starts with ``.``, ``/`` or ``~``, or has two slashes) must exist, and a local directory
    must hold a loadable model (config.json, intact weights: :func:`acdc_engine.loading.
    check_model_dir`), checked now, before torch is imported."""
    local = Path(text).expanduser()
    path_like = text.startswith((".", "/", "~")) or text.count("/") > 1
    if local.exists() and (path_like or "/" in text):
        from ..model_files import check_model_dir

        try:
            check_model_dir(local)
        except AcdcError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    elif path_like and not local.exists():
        raise argparse.ArgumentTypeError(f"model path {text!r} does not exist")
    return text


TASK_FILE_SUFFIXES = (".jsonl", ".csv", ".json")


def task_ref(text: str) -> str:
    """argparse type for ``--task``: a registered name, or a data file that must exist."""
    if Path(text).suffix.lower() in TASK_FILE_SUFFIXES and not Path(text).expanduser().exists():
        raise argparse.ArgumentTypeError(f"task file {text!r} does not exist")
    return text


def budgets(text: str) -> tuple[float, ...]:
    try:
        out = tuple(float(b) for b in text.split(",") if b.strip())
    except ValueError:
        raise AcdcError(f"--budgets expects percentages like 1,5,10,100, got {text!r}") from None
    if not out or any(not 0 < b <= 100 for b in out):
        raise AcdcError(f"--budgets must be percentages in (0, 100], got {text!r}")
    return out


def add_threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=positive,
                   help="CPU threads for torch (default: torch's; on a busy machine 1 is "
                        "often much faster)")


def add_tracking_args(p: argparse.ArgumentParser, experiment="the task's name") -> None:
    p.add_argument("--experiment", help=f"MLflow experiment (default: {experiment})")
    p.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, "
                                          "else sqlite:///results/mlflow.db)")
    p.add_argument("--no-track", action="store_true", help="do not log an MLflow run")


def settings(args) -> dict:
    """Method settings from --ig-steps and --set KEY=VALUE (numbers parsed as numbers)."""
    out = {}
    if args.ig_steps is not None:
        out["ig_steps"] = args.ig_steps
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise AcdcError(f"--set expects KEY=VALUE, got {item!r}")
        for cast in (int, float):
            try:
                value = cast(value)
                break
            except ValueError:
                continue
        out[key.strip()] = value
    return out




def record(args) -> dict:
    """RecordConfig options from the tracking flags; default output results/EXPERIMENT/RUN-ID."""
    from ..records import results_dir

    return dict(out=args.out, results=results_dir(), progress=not args.no_progress,
                track=not args.no_track, tracking_uri=args.tracking_uri,
                experiment=args.experiment, overwrite=getattr(args, "overwrite", False))


def add_overwrite_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in --out (without it, an --out that holds a "
                        "run is refused)")


def task_problem(args):
    """``(problem, data)`` for the evidence commands: ``--threads``, then ``--task`` on ``--model``
    (the task's own model when none is named) on ``--device``, ``--examples`` of them
    (``--seed`` where the command has one)."""
    from ..api.setup import build_problem, load_model, load_task
    from ..resources import set_threads

    set_threads(args.threads)
    task = load_task(args.task)
    lm = load_model(args.model or task.model, device=args.device)
    return build_problem(lm, task, n_examples=args.examples, seed=getattr(args, "seed", 0))

