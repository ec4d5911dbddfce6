"""SIGTERM and SIGHUP are handled like Ctrl-C: a real ``acdc discover`` process is stopped
mid-ACDC and its run is KILLED in MLflow and run.json, its checkpoint written, exit 143."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from acdc_engine.records.signals import Terminated, exit_code, terminate_as_interrupt


def test_sigterm_and_sighup_raise_terminated_with_the_shell_exit_code():
    for sig, code in ((signal.SIGTERM, 143), (signal.SIGHUP, 129)):
        with pytest.raises(Terminated) as info:
            with terminate_as_interrupt():
                os.kill(os.getpid(), sig)
                time.sleep(5)  # the handler raises at once, long before this ends
        assert isinstance(info.value, KeyboardInterrupt)
        assert exit_code(info.value) == code
    assert exit_code(KeyboardInterrupt()) == 130
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored after the block


def test_a_second_signal_during_the_clean_up_is_ignored():
    cleaned = False
    with pytest.raises(Terminated):
        with terminate_as_interrupt():
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            finally:
                os.kill(os.getpid(), signal.SIGTERM)  # e.g. a scheduler that insists
                time.sleep(0.05)
                cleaned = True
    assert cleaned


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143)])
def test_sigterm_to_acdc_discover_marks_the_run_killed_and_keeps_the_checkpoint(
        tmp_path, sig, code):
    out, ckpt, db = tmp_path / "run", tmp_path / "acdc.ckpt", tmp_path / "mlflow.db"
    env = {**os.environ, "ACDC_PROGRESS": "0", "ACDC_RESULTS": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "acdc_engine.cli", "discover", "--method", "acdc",
         "--examples", "8", "--set", "tau=0.0001", "--set", "speculate=1",
         "--set", f"checkpoint={ckpt}", "--set", "checkpoint_every=1", "--threads", "1",
         "--out", str(out), "--tracking-uri", f"sqlite:///{db}", "--no-render"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 240
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert proc.poll() is None, f"finished before it could be stopped: {proc.communicate()}"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr and "stopped by SIGTERM" in stderr
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "KILLED"
    assert "Terminated: stopped by SIGTERM" in record["error"]
    assert ckpt.exists()

    from mlflow import MlflowClient

    run = MlflowClient(f"sqlite:///{db}").get_run(record["run_id"])
    assert run.info.status == "KILLED"
