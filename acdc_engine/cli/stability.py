"""``acdc stability RUN``: how much a discovered circuit's numbers would move on other data.

    acdc stability RUN_ID -n 5                 # intervals, 5 subsamples, redundancy check
    acdc stability results/ioi/RUN --methods eap,eap-ig

Bootstrap intervals for faithfulness, CPR and CMD; the circuit found again on N random halves
of the examples (Jaccard against the run's circuit, and which edges get dropped); the
redundancy check. Written to ``stability.json`` in the run directory and logged to the run's
MLflow record.
"""

from __future__ import annotations

from .args import add_threads_arg, boot, fraction, subsamples

ORDER = 45


def _cmd_stability(args) -> int:
    from ..api.evidence import stability_for_run
    from ..resources import set_threads

    set_threads(args.threads)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    st, path, err = stability_for_run(args.run, n=args.n, fraction=args.fraction,
                                      n_boot=args.boot, methods=methods,
                                      uri=args.tracking_uri, device=args.device)
    print("\n".join(st["sentences"]))
    print(f"written to {path}")
    if err:
        print(f"warning: {err}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("stability", help="bootstrap intervals, stability across data "
                                         "subsamples and methods, redundancy of a run's circuit",
                       epilog="example: acdc stability RUN_ID -n 5")
    p.add_argument("run", help="run id, run directory or run.json of a discovery")
    p.add_argument("-n", type=subsamples, default=5, help="data subsamples to rediscover on "
                                                     "(default 5; 0: intervals only)")
    p.add_argument("--fraction", type=fraction, default=0.5,
                   help="share of the examples in each subsample (default 0.5)")
    p.add_argument("--boot", type=boot, default=1000, help="bootstrap resamples")
    p.add_argument("--methods", help="also compare with these methods' circuits (a,b,...)")
    p.add_argument("--device", default=None)
    p.add_argument("--tracking-uri", help="MLflow tracking URI of the run")
    add_threads_arg(p)
    p.set_defaults(func=_cmd_stability)
