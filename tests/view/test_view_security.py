"""The server refuses what another site, a rebound DNS name or a hostile string could do with
it: curl-like requests on loopback (http.client, every header as given) and, where a browser
is the vector, a page of another origin and an injected model id in headless Chromium."""

from __future__ import annotations

import http.client
import http.server
import json
import os
import threading
from pathlib import Path

import pytest

from acdc_engine.view.server import allowed_hosts

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def results():
    root = Path(os.environ["ACDC_RESULTS"])
    root.mkdir(parents=True, exist_ok=True)
    return root


def request(server, method: str, path: str, body: str | bytes | None = None,
            host: str | None = None, **headers: str) -> tuple[int, dict, str]:
    """One raw request: ``(status, headers, body)``; ``Host`` is exactly ``host`` when given."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    h = {k.replace("_", "-"): v for k, v in headers.items()}
    h["Host"] = host or f"127.0.0.1:{server.port}"
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    out = r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode()
    conn.close()
    return out


def _json_refusal(status, headers, body, code):
    assert status == code, (status, body)
    assert headers["content-type"].startswith("application/json")
    out = json.loads(body)
    assert out["ok"] is False and out["message"].startswith("refused")
    return out["message"]


# ----- cross-site requests ---------------------------------------------------------------------
def test_cross_origin_text_plain_post_is_refused_and_writes_nothing(served, view_session,
                                                                    results):
    target = results / "csrf.json"
    body = json.dumps({"text": f"save circuit {target}"})
    origin = {"Origin": "http://evil.example"}
    version = view_session.version
    # what a page of another origin can send without a preflight: text/plain, no token
    msg = _json_refusal(*request(served, "POST", "/api/command", body,
                                 Content_Type="text/plain", **origin), 403)
    assert "another origin" in msg
    _json_refusal(*request(served, "POST", "/api/command", body, Content_Type="text/plain"),
                  415)
    _json_refusal(*request(served, "POST", "/api/command", body,
                           Content_Type="application/x-www-form-urlencoded"), 415)
    msg = _json_refusal(*request(served, "POST", "/api/command", body,
                                 Content_Type="application/json"), 403)
    assert "X-ACDC-Token" in msg
    _json_refusal(*request(served, "POST", "/api/command", body,
                           Content_Type="application/json", X_ACDC_Token="guess"), 403)
    _json_refusal(*request(served, "POST", "/api/command", body, Content_Type="application/json",
                           X_ACDC_Token=served.secret, **origin), 403)
    _json_refusal(*request(served, "POST", "/api/circuit/size", '{"n_edges": 3}',
                           Content_Type="application/json"), 403)
    _json_refusal(*request(served, "PUT", "/api/command", body, Content_Type="text/plain"), 415)
    assert not target.exists() and view_session.version == version
    # the page itself (its secret, JSON, its own origin) still works
    status, _, out = request(served, "POST", "/api/command", body,
                             Content_Type="application/json; charset=utf-8",
                             X_ACDC_Token=served.secret,
                             Origin=f"http://127.0.0.1:{served.port}")
    assert status == 200 and json.loads(out)["ok"] and target.exists()


def test_host_header_must_name_this_server(served):
    port = served.port
    for path in ("/", "/api/state", "/static/app.js", "/api/heads?node=a0.0"):
        for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1:{port + 1}",
                     f"localhost.attacker.example:{port}"):
            msg = _json_refusal(*request(served, "GET", path, host=host), 403)
            assert "is not this server" in msg
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}",
                 f"[::1]:{port}"):
        status, _, body = request(served, "GET", "/api/state", host=host)
        assert status == 200 and json.loads(body)["graph"]["n_layers"] == 2


def test_a_cross_origin_read_is_refused(served):
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{served.port + 1}",
                   f"https://127.0.0.1:{served.port}"):
        _json_refusal(*request(served, "GET", "/api/state", Origin=origin), 403)
    status, headers, _ = request(served, "GET", "/api/state",
                                 Origin=f"http://localhost:{served.port}",
                                 host=f"localhost:{served.port}")
    assert status == 200 and "access-control-allow-origin" not in headers


def test_show_circuit_of_system_files_does_not_leak(served, tmp_path):
    secret_file = tmp_path / "shadow"
    secret_file.write_text("root:$6$leaked-hash:19000:0:99999:7:::\n")
    for ref in ("/etc/shadow", "../../../../etc/shadow", "/etc/passwd", "../../../../etc/passwd",
                str(secret_file), "/proc/self/environ"):
        status, _, body = request(served, "POST", "/api/command",
                                  json.dumps({"text": f"show circuit {ref}"}),
                                  Content_Type="application/json", X_ACDC_Token=served.secret)
        out = json.loads(body)
        assert status == 200 and out["ok"] is False, body
        assert "outside the folders the viewer may read" in out["message"]
        assert "root:" not in body and "leaked-hash" not in body and "/bin/" not in body


def test_the_page_carries_the_secret_and_a_strict_policy(served):
    status, headers, body = request(served, "GET", "/")
    assert status == 200
    assert f'<meta name="acdc-token" content="{served.secret}">' in body
    assert len(served.secret) >= 32
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1] \
        .split(";")[0]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["cache-control"] == "no-store"


def test_a_second_server_has_its_own_secret(view_session):
    a, b = view_session.serve(), view_session.serve()
    try:
        assert a.secret != b.secret
        _json_refusal(*request(b, "POST", "/api/command", '{"text": "ablate a0.0"}',
                               Content_Type="application/json", X_ACDC_Token=a.secret), 403)
    finally:
        a.stop()
        b.stop()


def test_with_a_token_the_token_is_the_secret(view_session):
    server = view_session.serve(token="t0k-long-enough")
    try:
        status, _, body = request(server, "GET", "/?token=t0k-long-enough")
        assert status == 200 and 'content="t0k-long-enough"' in body
        assert request(server, "GET", "/")[0] == 401  # the page needs the token first
        status, _, body = request(server, "POST", "/api/command", '{"text": "ablate a0.0"}',
                                  Content_Type="application/json", X_ACDC_Token="t0k-long-enough")
        assert status == 200 and json.loads(body)["ok"]
    finally:
        server.stop()


def test_allowed_hosts():
    assert allowed_hosts("127.0.0.1", 8765) == {"127.0.0.1:8765", "localhost:8765",
                                                "[::1]:8765"}
    assert allowed_hosts("::1", 9) == allowed_hosts("localhost", 9)
    assert allowed_hosts("viewer.lan", 9000) == {"viewer.lan:9000"}
    assert allowed_hosts("10.0.0.5", 80) == {"10.0.0.5:80", "10.0.0.5"}
    assert allowed_hosts("0.0.0.0", 9000) is None  # any name; check_bind demands a token


# ----- in the browser --------------------------------------------------------------------------
EVIL = """<!doctype html><html><body>
<iframe name="sink"></iframe>
<form id="f1" method="POST" action="{target}api/command" enctype="text/plain" target="sink">
<input name='{{"text": "save circuit {path_form}", "x": "' value='"}}'></form>
<form id="f2" method="POST" action="{target}api/command" target="sink">
<input name="text" value="save circuit {path_form}"></form>
<script>
const body = JSON.stringify({{text: "save circuit {path_fetch}"}});
const tries = [
  fetch("{target}api/command", {{method: "POST", mode: "no-cors", body,
                                   headers: {{"Content-Type": "text/plain"}}}}),
  fetch("{target}api/command", {{method: "POST", mode: "no-cors", body}}),
  fetch("{target}api/command", {{method: "POST", body,
                                   headers: {{"Content-Type": "application/json"}}}}),
  fetch("{target}api/command", {{method: "POST", mode: "no-cors",
                                   body: JSON.stringify({{text: "ablate a0.0"}})}}),
];
Promise.allSettled(tries).then((r) => {{
  const d = document.createElement("div"); d.id = "fetched";
  d.textContent = r.map((x) => x.status).join(","); document.body.appendChild(d);
  document.getElementById("f1").submit();
  setTimeout(() => {{ document.getElementById("f2").submit();
                     setTimeout(() => {{ const e = document.createElement("div"); e.id = "done";
                                         document.body.appendChild(e); }}, 700); }}, 700);
}});
</script></body></html>"""


@pytest.fixture
def evil_site(served, results):
    """A page of another origin (a second loopback server) that tries to drive the viewer."""
    paths = {"form": results / "csrf-form.json", "fetch": results / "csrf-fetch.json"}
    page = EVIL.format(target=f"http://127.0.0.1:{served.port}/", path_form=paths["form"],
                       path_fetch=paths["fetch"]).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", paths
    httpd.shutdown()
    httpd.server_close()


def test_a_page_of_another_origin_cannot_drive_the_session(evil_site, view_session, page):
    url, paths = evil_site
    version = view_session.version
    page.goto(url)
    page.wait_for_selector("#done", state="attached", timeout=20000)
    assert page.inner_text("#fetched").count(",") == 3  # every request was sent
    page.wait_for_timeout(300)
    assert not paths["form"].exists() and not paths["fetch"].exists()
    assert view_session.interventions == [] and view_session.version == version


def _compared_with_markup(view_session, tmp_path_factory, name: str):
    from acdc_engine import load_model
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.testing import save_gpt2
    from acdc_engine.view import Session

    path = tmp_path_factory.mktemp("models") / name
    save_gpt2(path, seed=5)
    other = load_model(str(path), device="cpu")
    problem = Problem.build(other, view_session.data, registry().metric("logit_diff"),
                            "corrupted")
    view_session.compare_with(Session(other, problem, view_session.data, task="toy"))
    return other.id


MARKUP = "<img src=x onerror=window.pwned=1>"


@pytest.mark.parametrize("policy", ["bypassed", "enforced"])
def test_markup_in_a_model_id_is_shown_as_text(view_session, tmp_path_factory, browser, policy):
    """acdc view --compare "DIR/<img src=x onerror=...>" then compare a0.0: heatmap() wrote
    model ids into the page unescaped. With the page's Content-Security-Policy bypassed, only
    the escaping stands between the id and a running script."""
    model_id = _compared_with_markup(view_session, tmp_path_factory, MARKUP)
    assert MARKUP in model_id
    server = view_session.serve()
    ctx = browser.new_context(bypass_csp=policy == "bypassed")
    pg = ctx.new_page()
    try:
        pg.goto(server.url)
        pg.wait_for_selector("#map rect[data-node='a0.0']")
        box = pg.locator("#console-input")
        box.fill("compare a0.0")
        box.press("Enter")
        pg.wait_for_selector("#compare-view")
        pg.wait_for_timeout(300)
        assert pg.evaluate("window.pwned") is None
        assert pg.locator("img").count() == 0
        assert MARKUP in pg.inner_text("#compare-view")
        names = pg.eval_on_selector_all("#heads-view svg.heat",
                                        "els => els.map(e => e.dataset.head)")
        assert any(MARKUP in n for n in names)
        assert MARKUP in pg.inner_text("#compare-model")
    finally:
        ctx.close()
        server.stop()


def test_the_page_works_under_its_own_policy(served, view_session, strict_page):
    """No inline script, eval or foreign resource: the page runs under its strict CSP."""
    pg = strict_page
    blocked = []
    pg.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text
          else None)
    pg.goto(served.url)
    pg.wait_for_selector("#map rect[data-node='a1.0']")
    pg.click("#map rect[data-node='a1.0']")
    pg.wait_for_selector("#interventions li:has-text('ablate a1.0 zero')")
    assert view_session.interventions == ["ablate a1.0 zero"]
    box = pg.locator("#console-input")
    box.fill("lens 0")
    box.press("Enter")
    pg.wait_for_selector("#lens-table")
    assert blocked == [] and pg.errors == []
