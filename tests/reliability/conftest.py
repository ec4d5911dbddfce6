"""Fixtures of the reliability tests: a PostgreSQL server in a temporary directory and an
``mlflow server`` on loopback with that database as its backend store (the ``scale`` tests;
skipped where PostgreSQL's binaries or a PostgreSQL driver are absent)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest


@pytest.fixture
def refused_when_parsed(capsys):
    """``check(line, message)``: ``acdc LINE`` stops in argument parsing with exit 2, one
    line holding ``message`` and no traceback (no model loaded, nothing run)."""
    from acdc_engine.cli import build_parser

    def check(line: str, message: str) -> None:
        with pytest.raises(SystemExit) as e:
            build_parser().parse_args(line.split())
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err

    return check


def pytest_configure(config):
    config.addinivalue_line("markers", "scale: needs PostgreSQL and an mlflow server "
                                       "(tox -e scale)")


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return hits[-1] if hits else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres_user() -> list[str]:
    """PostgreSQL refuses to run as root: run it as the ``postgres`` user then."""
    if os.geteuid() != 0:
        return []
    runuser = shutil.which("runuser")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except (ImportError, KeyError):
        runuser = None
    if runuser is None:
        pytest.skip("running as root without a 'postgres' user to run PostgreSQL as")
    return [runuser, "-u", "postgres", "--"]


@pytest.fixture(scope="session")
def postgres():
    """``postgresql+psycopg2://acdc@127.0.0.1:PORT`` of a fresh server (databases are created
    by the test), stopped at the end."""
    initdb, server = _pg_bin("initdb"), _pg_bin("postgres")
    if initdb is None or server is None:
        pytest.skip("PostgreSQL binaries (initdb, postgres) not found")
    psycopg2 = pytest.importorskip("psycopg2")
    prefix = _as_postgres_user()
    root = Path(tempfile.mkdtemp(prefix="acdc-pg-"))  # not under pytest's 0700 root-only dir
    if prefix:
        shutil.chown(root, "postgres")
    subprocess.run([*prefix, initdb, "-D", str(root / "data"), "-U", "acdc", "--auth=trust",
                    "-E", "UTF8"], check=True, capture_output=True)
    port = _free_port()
    log = open(root / "postgres.log", "w")
    proc = subprocess.Popen([*prefix, server, "-D", str(root / "data"), "-k", str(root),
                             "-h", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log)
    try:
        for _ in range(300):
            try:
                psycopg2.connect(host="127.0.0.1", port=port, user="acdc",
                                 dbname="postgres").close()
                break
            except psycopg2.OperationalError:
                if proc.poll() is not None:
                    pytest.fail(f"postgres exited: {(root / 'postgres.log').read_text()}")
                time.sleep(0.2)
        yield f"postgresql+psycopg2://acdc@127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
        shutil.rmtree(root, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """Create database ``name`` on the server of ``url``; returns its URL."""
    import psycopg2

    host_port = url.rsplit("@", 1)[1]
    host, port = host_port.split(":")
    conn = psycopg2.connect(host=host, port=int(port), user="acdc", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    return f"{url}/{name}"


@pytest.fixture(scope="session")
def new_database(postgres):
    """``new_database(name)`` creates a database on the PostgreSQL fixture; returns its URL."""
    return lambda name: create_database(postgres, name)


@pytest.fixture(scope="session")
def mlflow_server(postgres, tmp_path_factory):
    """``http://127.0.0.1:PORT`` of an ``mlflow server`` whose backend store is a database of
    the PostgreSQL fixture (artifacts served from a temporary directory)."""
    backend = create_database(postgres, "mlflow")
    art = tmp_path_factory.mktemp("mlflow-artifacts")
    port = _free_port()
    log = open(art.parent / "mlflow-server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                             backend, "--artifacts-destination", str(art), "--host",
                             "127.0.0.1", "--port", str(port), "--workers", "1"],
                            stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 600  # imports and migrations: minutes on a loaded machine
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                if proc.poll() is not None:
                    pytest.fail(f"mlflow server exited: {Path(log.name).read_text()[-2000:]}")
                time.sleep(1)
        else:
            pytest.fail("mlflow server did not answer within 10 minutes")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
