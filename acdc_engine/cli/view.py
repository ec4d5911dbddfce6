"""``acdc view``: a live browser workbench over a running model (see :mod:`acdc_engine.view`).

    acdc view                              # tiny-ioi on ioi at http://127.0.0.1:8765/
    acdc view --run RUN_ID --no-browser    # with a discovered circuit drawn on the map
    acdc view --host 0.0.0.0 --token SECRET --port 9000   # reachable from elsewhere
    acdc view --model base/ --compare finetuned/          # two models side by side
    acdc view --graph results/graphs/ioi.json             # an attribution graph
"""

from __future__ import annotations

import argparse
import sys
import threading
import webbrowser
from pathlib import Path

from .args import add_threads_arg, count, positive

ORDER = 70


def port(text: str) -> int:
    """argparse type: a TCP port, 0 to 65535 (0: any free one)."""
    n = count(text)
    if n > 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 0 to 65535, got {n}")
    return n


def _cmd_view(args) -> int:
    from ..errors import AcdcError
    from ..resources import set_threads
    from ..view.server import (BROWSER_DELAY_S, ViewServer, check_bind, open_socket,
                               require_web)

    require_web()
    # Address checks come first: a refused bind or a port in use fails before the model loads.
    check_bind(args.host, args.token)
    if args.port:
        open_socket(args.host, args.port).close()
    graph_model = _graph_model(args.graph) if args.graph else None
    if args.transcoders and not Path(args.transcoders).exists():
        raise AcdcError(f"--transcoders {args.transcoders}: no such file or folder")
    set_threads(args.threads)
    from ..view import Session

    try:
        session = Session.open(args.model or graph_model or "tiny-ioi", args.task,
                               n_examples=args.n_examples, device=args.device,
                               metric=args.metric)
    except AcdcError as e:
        if not args.graph or args.task:
            raise
        first = str(e).splitlines()[0].rstrip(":")
        raise AcdcError(f"--graph: the viewer opens the graph's model on a task too, and "
                        f"{first}; name one with --task (ioi-names for gpt2-ioi-bpe)") from None
    if args.compare:
        try:
            other = Session.open(args.compare, session.task, n_examples=args.n_examples,
                                 device=args.device, metric=args.metric)
        except AcdcError as e:
            raise AcdcError(f"--compare {args.compare}: {e}") from None
        session.compare_with(other)
    if args.run:
        session.allow(args.run)  # the console may show it again (show circuit PATH)
        try:
            session.circuit.load(args.run)
        except AcdcError as e:
            print(f"warning: {e}; starting without a circuit", file=sys.stderr)
    server = ViewServer(session, host=args.host, port=args.port, token=args.token)
    url = server.url
    if args.graph:
        from ..view.graphs import graph_url

        session.allow(args.graph)  # the page may read it and save pins/supernodes into it
        tc = Path(args.transcoders).resolve() if args.transcoders else None
        if tc is not None:
            session.allow(tc)
        url = graph_url(server, Path(args.graph).resolve(), tc)
    print(f"acdc view: {session.name} at {url}  (Ctrl-C stops)", flush=True)
    if not args.no_browser:
        threading.Timer(BROWSER_DELAY_S, webbrowser.open, [url]).start()
    server.run()
    return 0


def _graph_model(path: str) -> str | None:
    """The model a graph JSON was traced on (``metadata.model``, or a shipped model its
    ``scan`` names), after checking the file: a bad graph fails before any model loads."""
    from ..features.shipped import SHIPPED
    from ..view.graphs import read_graph

    meta = read_graph(path)["metadata"]
    model = meta.get("model") or (meta.get("scan") if meta.get("scan") in SHIPPED else None)
    return str(model) if model else None


def register(sub) -> None:
    p = sub.add_parser("view", help="open a live browser workbench on a model and task",
                       epilog="example: acdc view --run RUN_ID --no-browser")
    p.add_argument("--model", help="shipped name, local path or hub id (default: the --graph's "
                                   "model, else tiny-ioi)")
    p.add_argument("--task", help="task name or pairs file (default: the model's task)")
    p.add_argument("--run", help="draw this run's circuit (run id, run directory, scores file "
                                 "or circuit.json)")
    p.add_argument("--graph", metavar="PATH",
                   help="open the attribution-graph page on this graph JSON (circuit-tracer's "
                        "format, e.g. from acdc trace)")
    p.add_argument("--transcoders", metavar="PATH",
                   help="with --graph: the transcoders it was traced with (default: the "
                        "graph's metadata.transcoders, else the model's shipped ones)")
    p.add_argument("--compare", metavar="MODEL",
                   help="a second model (e.g. the fine-tuned one) shown side by side")
    p.add_argument("--metric", help="metric (default: the task's)")
    p.add_argument("--n-examples", type=positive, help="examples of the task (default: its own)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; anything else needs --token); "
                        "requests must name it in their Host header (docs/view.md, Security)")
    p.add_argument("--port", type=port, default=8765, help="port (default 8765; 0: any free)")
    p.add_argument("--token", help="secret the page and clients must send (?token= or the "
                                   "X-ACDC-Token header)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    add_threads_arg(p)
    p.set_defaults(func=_cmd_view)
