"""``acdc report RUN``: one offline HTML page (and a PDF) making the case for a circuit.

    acdc report RUN_ID                   # results/<exp>/<run>/report/report.html (+ .pdf)
    acdc report RUN_ID --out my-report -n 10

The hypothesis (task, circuit picture), descriptive evidence (attention, logit lens, direct
logit attribution, token attribution), interventions with intervals (faithfulness curve,
activation patching, node ablation) and what remains uncertain, in sentences generated from
the numbers. Logged under ``report/`` in the run's MLflow artifacts.
"""

from __future__ import annotations

from pathlib import Path

from .args import add_threads_arg, boot, subsamples

ORDER = 46


def _cmd_report(args) -> int:
    from ..api.evidence import report_for_run
    from ..resources import set_threads

    set_threads(args.threads)
    if args.out is not None:  # a location that cannot be written fails before any work
        from ..errors import AcdcError

        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise AcdcError(f"cannot write the report directory {args.out}: "
                            f"{e.strerror or e}") from None
    html, pdf, err = report_for_run(args.run, out=args.out, n=args.n, n_boot=args.boot,
                                    pdf=not args.no_pdf, uri=args.tracking_uri,
                                    device=args.device)
    print(f"report: {html}")
    if pdf:
        print(f"pdf: {pdf}")
    if err:
        print(f"warning: {err}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("report", help="one-page HTML report of a discovery run",
                       epilog="example: acdc report RUN_ID --out my-report")
    p.add_argument("run", help="run id, run directory or run.json of a discovery")
    p.add_argument("--out", type=Path, help="output directory (default: RUN_DIR/report)")
    p.add_argument("-n", type=subsamples, default=5, help="data subsamples for stability "
                                                     "(default 5)")
    p.add_argument("--boot", type=boot, default=1000, help="bootstrap resamples")
    p.add_argument("--no-pdf", action="store_true", help="skip the PDF")
    p.add_argument("--device", default=None)
    p.add_argument("--tracking-uri", help="MLflow tracking URI of the run")
    add_threads_arg(p)
    p.set_defaults(func=_cmd_report)
