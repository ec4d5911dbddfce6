"""``acdc runs``: recent runs with their key metrics, filtered, as a table or JSON."""

from __future__ import annotations

import json
import sys

from .args import positive

ORDER = 30


def _cmd_runs(args) -> int:
    from ..records import TrackingError, format_runs, list_runs, runs_json

    where = {"task": args.task, "method": args.method, "model": args.model}
    try:
        rows, src = list_runs(experiment=args.experiment, limit=args.limit,
                              uri=args.tracking_uri, track=not args.no_track, where=where)
    except TrackingError as e:
        print(f"warning: {e}; listing run.json files instead", file=sys.stderr)
        rows, src = list_runs(experiment=args.experiment, limit=args.limit, track=False,
                              where=where)
    if args.json:
        print(json.dumps({"source": src, "runs": runs_json(rows)}, indent=1))
        return 0
    shown = [f"experiment {args.experiment!r}"] if args.experiment else []
    shown += [f"{k} {v!r}" for k, v in where.items() if v is not None]
    print(f"{len(rows)} most recent run(s) from {src}"
          + (f", {', '.join(shown)}" if shown else ""))
    print(format_runs(rows))
    return 0


def register(sub) -> None:
    rn = sub.add_parser("runs", help="list recent runs with their key metrics",
                        epilog="example: acdc runs --task ioi --method eap --limit 5 --json")
    rn.add_argument("--experiment", help="only this experiment (e.g. a task name)")
    rn.add_argument("--task", help="only runs of this task (a name, or a pairs file's path, "
                                   "name or stem)")
    rn.add_argument("--method", help="only runs of this method (e.g. eap)")
    rn.add_argument("--model", help="only runs of this model (a name, path or its last part)")
    rn.add_argument("--limit", type=positive, default=20, help="how many runs (default 20)")
    rn.add_argument("--json", action="store_true",
                    help="print {source, runs: [...]} as JSON instead of the table")
    rn.add_argument("--tracking-uri", help="MLflow tracking URI (default as for discover)")
    rn.add_argument("--no-track", action="store_true",
                    help="read results/*/*/run.json instead of the MLflow store")
    rn.set_defaults(func=_cmd_runs)
