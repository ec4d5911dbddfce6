"""``acdc runs``: recent runs with their key metrics."""

from __future__ import annotations

import sys

from .args import positive

ORDER = 30

def _cmd_runs(args) -> int:
    from ..records import TrackingError, format_runs, list_runs

    try:
        rows, where = list_runs(experiment=args.experiment, limit=args.limit,
                                uri=args.tracking_uri, track=not args.no_track)
    except TrackingError as e:
        print(f"warning: {e}; listing run.json files instead", file=sys.stderr)
        rows, where = list_runs(experiment=args.experiment, limit=args.limit, track=False)
    print(f"{len(rows)} most recent run(s) from {where}"
          + (f", experiment {args.experiment!r}" if args.experiment else ""))
    print(format_runs(rows))
    return 0


def register(sub) -> None:
    rn = sub.add_parser("runs", help="list recent runs with their key metrics")
    rn.add_argument("--experiment", help="only this experiment (e.g. a task name)")
    rn.add_argument("--limit", type=positive, default=20, help="how many runs (default 20)")
    rn.add_argument("--tracking-uri", help="MLflow tracking URI (default as for discover)")
    rn.add_argument("--no-track", action="store_true",
                    help="read results/*/*/run.json instead of the MLflow store")
    rn.set_defaults(func=_cmd_runs)
