"""The server without a browser: tokens, binding, ports, JSON errors, the CLI's checks."""

from __future__ import annotations

import socket

import httpx
import pytest

from acdc_engine.errors import AcdcError
from acdc_engine.view.server import ViewServer, check_bind, open_socket


def test_state_command_and_errors_as_json(served):
    base = served.url
    state = httpx.get(base + "api/state").json()
    assert state["model"] and state["graph"]["n_layers"] == 2 and state["interventions"] == []
    ok = httpx.post(base + "api/command", json={"text": "ablate a1.0"},
                    headers={"X-ACDC-Token": served.secret}).json()
    assert ok["ok"] and "logit_diff" in ok["message"]
    bad = httpx.get(base + "api/heads", params={"node": "a5.5", "mode": "qk"})
    assert bad.status_code == 400 and "no node 'a5.5'" in bad.json()["message"]
    bad = httpx.get(base + "api/lens", params={"example": "x"})
    assert bad.status_code == 400 and "example must be a number" in bad.json()["message"]
    bad = httpx.get(base + "api/lens", params={"text": "qqq zzz"})
    assert bad.status_code == 400 and "does not tokenize" in bad.json()["message"]
    assert httpx.get(base + "api/state").json()["interventions"] == ["ablate a1.0 zero"]
    assert httpx.get(base + "static/app.js").status_code == 200


def test_events_stream_sends_the_new_state(served, view_session):
    with httpx.stream("GET", served.url + "api/events", timeout=10) as r:
        lines = r.iter_lines()
        first = next(line for line in lines if line.startswith("data:"))
        assert '"version": 0' in first
        with view_session.busy("a long computation"):  # other tabs see the progress
            assert next(line for line in lines if "activity" in line) == \
                'data: {"activity": "a long computation"}'
        view_session.ablate("m0")  # a change from code reaches the stream
        nxt = next(line for line in lines if line.startswith("data:") and "version" in line)
        assert '"ablate m0 zero"' in nxt


def test_token_is_required_when_given(view_session):
    server = view_session.serve(token="s3cret")
    try:
        plain = server.url.split("?")[0]
        assert httpx.get(plain + "api/state").status_code == 401
        assert httpx.get(plain + "api/state", params={"token": "nope"}).status_code == 401
        assert httpx.get(plain + "api/state", headers={"X-ACDC-Token": "s3cret"}).status_code == 200
        assert httpx.get(plain, params={"token": "s3cret"}).status_code == 200
        assert httpx.get(plain + "static/app.js").status_code == 200  # code, not data
    finally:
        server.stop()


def test_bind_beyond_loopback_needs_a_token(view_session):
    with pytest.raises(AcdcError, match="without a token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(AcdcError, match="without a token"):
        ViewServer(view_session, host="0.0.0.0")
    check_bind("0.0.0.0", "t")
    check_bind("127.0.0.1", None)


def test_port_in_use_is_one_line():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(AcdcError, match=f"port {port} on 127.0.0.1 is in use"):
            open_socket("127.0.0.1", port)


def test_cli_port_in_use_exits_2_before_loading(capsys):
    from acdc_engine.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["view", "--port", str(port), "--no-browser"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: port {port} on 127.0.0.1 is in use; choose another with --port "
                   "(or --port 0 for a free one)")
    assert main(["view", "--host", "0.0.0.0", "--no-browser"]) == 2
    assert "without a token" in capsys.readouterr().err


def test_two_sessions_are_isolated(view_session, gpt2):
    from acdc_engine.view import Session

    other = Session(gpt2, view_session.problem, view_session.data, task="toy")
    a, b = view_session.serve(), other.serve()
    try:
        httpx.post(a.url + "api/command", json={"text": "ablate a0.0"},
                   headers={"X-ACDC-Token": a.secret})
        assert httpx.get(b.url + "api/state").json()["interventions"] == []
        assert httpx.get(a.url + "api/state").json()["interventions"] == ["ablate a0.0 zero"]
    finally:
        a.stop()
        b.stop()
