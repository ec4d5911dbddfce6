"""What MLflow tracking adds to a default discovery run, measured side by side in one run.

    python benchmarks/tracking_overhead.py               # tiny-ioi + ioi, EAP-IG, CPU
    python benchmarks/tracking_overhead.py --repeats 5 --no-render

Runs the default discovery (``discover()`` with the embedded model and task, writing a run
directory with pictures, curve and scores) alternately untracked and tracked into one SQLite
store in a temporary directory, after one warm-up of each (imports, model load, and the new
store's schema migration, which happens once per store and is reported on its own line).
Prints the median wall time of each, the difference, and the tracked run's share spent in
MLflow calls (time inside the ``MlflowClient`` methods the tracking layer calls).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--method", default="eap-ig")
    ap.add_argument("--no-render", action="store_true", help="skip the circuit pictures")
    args = ap.parse_args()

    import mlflow

    from acdc_engine import discover
    from acdc_engine import load_model
    from acdc_engine.plugins import registry

    model = load_model(registry().task("ioi").model)  # loaded once: the comparison is tracking
    spent = {"s": 0.0}

    def timed(fn):  # time inside the tracking layer's MLflow calls
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent["s"] += time.perf_counter() - t
        return wrapper

    for name in ("log_batch", "log_artifact", "log_artifacts", "create_run", "set_terminated",
                 "get_run", "get_experiment", "get_experiment_by_name", "search_experiments",
                 "create_experiment"):
        setattr(mlflow.MlflowClient, name, timed(getattr(mlflow.MlflowClient, name)))

    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"

        def once(track: bool) -> float:
            t = time.perf_counter()
            discover(model, method=args.method, progress=False, track=track, tracking_uri=uri,
                     results=Path(tmp) / "results", render=not args.no_render)
            return time.perf_counter() - t

        once(False)  # warm-up: imports, first-call costs
        first = once(True)  # creates the store
        print(f"first tracked run (creates the SQLite store): {first:.2f} s")
        plain, tracked, inside = [], [], []
        for _ in range(args.repeats):
            plain.append(once(False))
            spent["s"] = 0.0
            tracked.append(once(True))
            inside.append(spent["s"])
    p, q = statistics.median(plain), statistics.median(tracked)
    print(f"discover {args.method} on tiny-ioi/ioi, median of {args.repeats}, "
          f"mlflow {mlflow.__version__}, render {'off' if args.no_render else 'on'}")
    print(f"untracked   {p:7.2f} s")
    print(f"tracked     {q:7.2f} s")
    print(f"overhead    {q - p:+7.2f} s ({(q - p) / p:+.0%}); inside MLflow client calls "
          f"{statistics.median(inside):.2f} s")


if __name__ == "__main__":
    main()
