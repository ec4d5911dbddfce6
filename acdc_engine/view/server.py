"""The ``acdc view`` web server: thin JSON over HTTP on one :class:`Session`, server-sent
events for live updates, and the static page shipped in ``view/static/``.

    GET  /                     the page            GET  /api/state        the session as JSON
    POST /api/command {text}   one console line    GET  /api/events       server-sent events
    GET  /api/heads?node=a1.2&mode=qk|ov&example=0          GET  /api/circuit  drawn edges
    GET  /api/lens?example=0&position=-1[&text=...]          GET  /api/prompt?example=0
    GET  /api/tokens?example=0&method=input_x_grad           GET  /api/dla
    GET  /api/compare?node=a1.2&example=0   the same head of the second model, and the change
    POST /api/circuit/size {n_edges}

Every change to the session (from this page, another tab or a notebook) bumps
``session.version``; each open ``/api/events`` stream sends the new state when it sees that.
Errors a user can cause answer ``{"ok": false, "message": ...}`` (status 400), anything else
status 500 with the exception's one-line message: never a traceback in the browser.

Binding: 127.0.0.1 by default; any other address needs a token, which the page and clients
send as ``?token=...`` or the ``X-ACDC-Token`` header.

Every request is checked before it reaches the session (:func:`guard`): its ``Host`` must name
this server (on loopback: 127.0.0.1, localhost or [::1] with the server's port; with ``--host
NAME``: that name), which defeats DNS rebinding; an ``Origin``, when sent, must be the server's
own; and a request that changes anything (any method but GET, HEAD, OPTIONS) must say
``Content-Type: application/json`` and carry the session's secret in the ``X-ACDC-Token``
header. The secret is the ``--token`` when one is given, else a random one made when the server
starts; the server writes it into the page it serves (``<meta name="acdc-token">``), so only
the page (and code holding ``server.secret``) can drive the session: another site's page can
neither read it nor send the header without a CORS preflight, which this server never grants.
Refusals are short JSON errors (403, 415; 401 for a missing ``--token``).
"""

from __future__ import annotations

import asyncio
import hmac
import html
import json
import secrets
import socket
import threading
import time
import webbrowser
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AcdcError
from ._compat import warm_anyio

if TYPE_CHECKING:
    from .session import Session

__all__ = ["ViewServer", "build_app", "LOOPBACK", "check_bind", "open_socket", "require_web",
           "allowed_hosts", "guard"]

STATIC = Path(__file__).parent / "static"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
"""The hosts the viewer binds to without ``--allow-remote``."""
WILDCARD = ("0.0.0.0", "::", "")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
TOKEN_META = '<meta name="acdc-token" content="">'
"""Where the page carries the session's secret (filled in when ``/`` is served)."""

# timing, in seconds
EVENT_POLL_S = 0.05  # how often an /api/events stream looks at session.version and activity
KEEPALIVE_S = 15  # an idle /api/events stream sends a comment this often (proxies keep it)
START_TIMEOUT_S, START_POLL_S = 10, 0.02  # ViewServer.start waits for uvicorn, polling
STOP_TIMEOUT_S = 5  # ViewServer.stop waits this long for the server thread to end
SHUTDOWN_GRACE_S = 1  # uvicorn's graceful shutdown: open event streams get this long
BROWSER_DELAY_S = 0.5  # `acdc view` opens the browser this long after serving starts

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # no inline script, nothing from elsewhere: an injected onerror= would not run either
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
     b"img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
     b"form-action 'none'"),
]


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def allowed_hosts(host: str, port: int) -> frozenset[str] | None:
    """The ``Host`` header values this server answers (lower case): the loopback names with
    its port when it binds a loopback address, else the name it binds; None (any Host) for a
    wildcard address (0.0.0.0, ::), which :func:`check_bind` lets serve only behind a token."""
    if host in WILDCARD:
        return None
    names = {"127.0.0.1", "localhost", "[::1]"} if host in LOOPBACK else {_bracket(host.lower())}
    out = {f"{n}:{port}" for n in names}
    if port == 80:
        out |= names
    return frozenset(out)


def guard(method: str, headers: dict[str, str], hosts: frozenset[str] | None,
          secret: str) -> tuple[int, str] | None:
    """None if a request may reach the session, else ``(status, reason)``. ``headers`` are
    lower-cased names; see the module for the rules."""
    host = headers.get("host", "").strip().lower()
    if not host or (hosts is not None and host not in hosts):
        return 403, (f"refused: Host {host or '(none)'!r} is not this server (expected "
                     f"{' or '.join(sorted(hosts or ['a Host header']))})")
    origin = headers.get("origin")
    if origin is not None and origin.strip().lower() != f"http://{host}":
        return 403, (f"refused: a request from another origin ({origin[:100]!r}); only this "
                     "server's own page may use it")
    if method.upper() not in SAFE_METHODS:
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/json":
            return 415, "refused: send the body as Content-Type: application/json"
        given = headers.get("x-acdc-token", "")
        if not (given and hmac.compare_digest(given.encode(), secret.encode())):
            return 403, ("refused: a request that changes the session needs the page's "
                         "X-ACDC-Token header (use the page, or start with --token and send it)")
    return None


def require_web() -> None:
    """Starlette and uvicorn (the ``view`` extra; MLflow brings both), importable next to
    nnsight."""
    from ..extras import require

    require("starlette", "view", "the acdc view server")
    require("uvicorn", "view", "the acdc view server")
    warm_anyio()


def check_bind(host: str, token: str | None) -> None:
    """Refuse to bind beyond loopback without a token."""
    if host not in LOOPBACK and not token:
        raise AcdcError(f"refusing to serve on {host!r} without a token: anyone who can reach "
                        "it could drive the model; pass --token (or bind 127.0.0.1)")


def open_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one); a port in use is a one-line
    :class:`AcdcError`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno in (98, 48, 10048):  # EADDRINUSE on Linux, macOS, Windows
            raise AcdcError(f"port {port} on {host} is in use; choose another with --port "
                            "(or --port 0 for a free one)") from None
        raise AcdcError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    sock.listen(64)
    sock.setblocking(False)
    return sock


def build_app(session: Session, token: str | None = None, *, host: str = "127.0.0.1",
              port: int = 8765, secret: str | None = None):
    """The Starlette application serving ``session`` on ``host:port`` (for the Host check);
    ``secret`` (default: ``token``, else a random one) is what changing requests must send."""
    require_web()
    secret = secret or token or secrets.token_urlsafe(32)
    hosts = allowed_hosts(host, port)
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.responses import HTMLResponse, JSONResponse, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles
    from .graphs import graph_routes

    class Guard:
        """Pure ASGI middleware (streams pass through untouched): Host, Origin, content type
        and secret (:func:`guard`), then the ``--token`` on everything but the page's own code
        and style (/static/); security headers on every answer."""

        def __init__(self, app):
            self.app = app

        async def __call__(self, scope, receive, send):
            if scope["type"] != "http":
                await self.app(scope, receive, send)
                return
            headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                       for k, v in scope.get("headers", [])}

            async def send_secured(message):
                if message["type"] == "http.response.start":
                    message = {**message, "headers": [*message.get("headers", []),
                                                      *SECURITY_HEADERS]}
                await send(message)

            refused = guard(scope["method"], headers, hosts, secret)
            if refused is None and token is not None \
                    and not scope["path"].startswith("/static/"):
                from starlette.requests import HTTPConnection

                conn = HTTPConnection(scope)
                given = conn.query_params.get("token") or headers.get("x-acdc-token")
                if not (given and hmac.compare_digest(given.encode(), token.encode())):
                    refused = (401, "a token is needed: open the URL acdc view printed "
                                    "(...?token=...) or send the X-ACDC-Token header")
            if refused is not None:
                status, msg = refused
                await JSONResponse({"ok": False, "message": msg}, status)(
                    scope, receive, send_secured)
                return
            await self.app(scope, receive, send_secured)

    def guarded(fn):
        """Run ``fn(request args)`` in a worker thread; errors become JSON messages."""
        async def endpoint(request):
            try:
                body = await request.json() if request.method == "POST" else {}
            except ValueError:
                return JSONResponse({"ok": False, "message": "the request body is not JSON"}, 400)
            args = {**request.query_params, **(body if isinstance(body, dict) else {})}
            args.pop("token", None)
            try:
                out = await run_in_threadpool(fn, args)
            except AcdcError as e:  # 400, or the error's own status (graphs.NotAvailable: 501)
                return JSONResponse({"ok": False, "message": str(e)}, getattr(e, "status", 400))
            except (KeyError, ValueError, TypeError) as e:
                msg = e.args[0] if e.args else str(e)
                return JSONResponse({"ok": False, "message": f"bad request: {msg}"}, 400)
            except Exception as e:  # noqa: BLE001  (one line for the page, never a traceback)
                return JSONResponse({"ok": False, "message": f"{type(e).__name__}: {e}"}, 500)
            return JSONResponse(_finite(out))
        return endpoint

    def num(args, key, default, kind=int):
        v = args.get(key)
        if v in (None, ""):
            return default
        try:
            return kind(v)
        except (TypeError, ValueError):
            raise AcdcError(f"{key} must be a number, got {v!r}") from None

    def command(a):
        """One console line; the answer carries the new state (no second request)."""
        return {**session.command(str(a.get("text", ""))), "state": session.state()}

    def heads(a):
        node, mode = a.get("node", ""), a.get("mode", "qk")
        ex = num(a, "example", 0)
        if mode == "qk":
            return session.inspect.qk(node, ex)
        if mode == "ov":
            return session.inspect.ov(node, None if a.get("all") else ex)
        raise AcdcError(f"unknown head mode {mode!r} (use qk or ov)")

    def compare(a):
        from .compare import compare_heads

        return compare_heads(session, a.get("node", ""), num(a, "example", 0))

    def lens(a):
        return session.inspect.lens(num(a, "example", 0), num(a, "position", -1),
                                    a.get("text") or None)

    def tokens(a):
        return session.inspect.attribution(num(a, "example", 0),
                                           a.get("method", "input_x_grad"))

    def circuit(a):
        return {"info": session.circuit.info(), "edges": session.circuit.edges()}

    def size(a):
        return session.circuit.size(num(a, "n_edges", 0))

    async def events(request):
        async def stream():
            seen, busy = -1, None
            last = time.monotonic()
            while True:
                if await request.is_disconnected():
                    break
                if session.activity != busy:  # another tab's (or the notebook's) computation
                    busy = session.activity
                    yield f"event: busy\ndata: {json.dumps({'activity': busy})}\n\n"
                if session.version != seen:
                    seen = session.version
                    # in a worker thread: state() waits while a computation holds the session,
                    # and the event loop must keep serving everyone else meanwhile
                    state = _finite(await run_in_threadpool(session.state))
                    yield f"event: state\ndata: {json.dumps(state)}\n\n"
                    last = time.monotonic()
                elif time.monotonic() - last > KEEPALIVE_S:
                    yield ": keep-alive\n\n"
                    last = time.monotonic()
                await asyncio.sleep(EVENT_POLL_S)
        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    page = (STATIC / "index.html").read_text(encoding="utf-8")
    if TOKEN_META not in page:
        raise RuntimeError("view/static/index.html lacks the acdc-token meta tag")
    page = page.replace(TOKEN_META, f'<meta name="acdc-token" content="{html.escape(secret)}">')

    async def index(request):
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    routes = [
        Route("/", index),
        Route("/api/state", guarded(lambda a: session.state())),
        Route("/api/command", guarded(command), methods=["POST"]),
        Route("/api/heads", guarded(heads)), Route("/api/lens", guarded(lens)),
        Route("/api/tokens", guarded(tokens)),
        Route("/api/prompt", guarded(lambda a: session.prompt(num(a, "example", 0)))),
        Route("/api/compare", guarded(compare)),
        Route("/api/dla", guarded(lambda a: session.inspect.dla())),
        Route("/api/circuit", guarded(circuit)),
        Route("/api/circuit/size", guarded(size), methods=["POST"]),
        Route("/api/events", events),
        *graph_routes(session, secret, guarded),  # /graph: the attribution-graph page
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(Guard)])


def _finite(x):
    """JSON-safe: NaN and infinities become None (browsers cannot parse them)."""
    if isinstance(x, float):
        return x if x == x and abs(x) != float("inf") else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


class ViewServer:
    """One session served by uvicorn, in the foreground (:meth:`run`) or a background thread
    (:meth:`start`, for notebooks and tests)."""

    def __init__(self, session: Session, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None):
        check_bind(host, token)
        self.session, self.host, self.token = session, host, token
        self.sock = open_socket(host, port)
        self.port = self.sock.getsockname()[1]
        self.secret = token or secrets.token_urlsafe(32)
        """What a request that changes the session sends as ``X-ACDC-Token`` (the page has
        it; code driving the server over HTTP reads it here)."""
        self._server = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def _uvicorn(self):
        import uvicorn

        app = build_app(self.session, self.token, host=self.host, port=self.port,
                        secret=self.secret)
        config = uvicorn.Config(app, log_level="warning",
                                access_log=False, lifespan="off",
                                timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
        self._server = uvicorn.Server(config)
        return self._server

    def run(self, open_browser: bool = False) -> None:
        """Serve until interrupted (Ctrl-C)."""
        server = self._uvicorn()
        if open_browser:
            threading.Timer(BROWSER_DELAY_S, webbrowser.open, [self.url]).start()
        server.run(sockets=[self.sock])

    def start(self, open_browser: bool = False) -> ViewServer:
        """Serve in a daemon thread; returns once the server accepts connections."""
        server = self._uvicorn()
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [self.sock]},
                                        daemon=True, name=f"acdc-view-{self.port}")
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not server.started and time.monotonic() < deadline:
            time.sleep(START_POLL_S)
        if open_browser:
            webbrowser.open(self.url)
        return self

    def stop(self) -> None:
        """Stop a background server (the session keeps its state)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT_S)
        self.sock.close()

    def _repr_html_(self) -> str:
        url, name = html.escape(self.url), html.escape(self.session.name)
        return (f'<a href="{url}" target="_blank">acdc view: {name}</a> '
                f'<iframe src="{url}" style="width:100%;height:720px;border:1px solid '
                '#ccc"></iframe>')

    def __repr__(self) -> str:
        return f"ViewServer({self.url})"
