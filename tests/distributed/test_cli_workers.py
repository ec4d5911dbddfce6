"""``acdc discover --workers N`` end to end (slow: every rank starts Python, torch and the
model): the one-process scores, identical ACDC decisions, rank 0 alone records; a rank killed
with SIGKILL ends the job with one line naming it, and the checkpoint resumes with another
number of ranks to the uninterrupted answer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acdc_engine.testing import random_pairs, save_gpt2

pytestmark = pytest.mark.slow

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "ACDC_PROGRESS": "0"}


def _task(path: Path, n: int) -> Path:
    rows = random_pairs(n - n // 3, seed=0) + random_pairs(n // 3, length=7, seed=3)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _discover(model, task, out, *extra, workers=1, wait=True):
    cmd = [sys.executable, "-m", "acdc_engine.cli", "discover", "--model", str(model),
           "--task", str(task), "--no-track", "--no-render", "--no-progress",
           "--batch-size", "4", "--out", str(out), "--overwrite", *extra]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    if not wait:
        return subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    return subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=600)


def _scores(out: Path) -> dict[str, float]:
    lines = (out / "edge_scores.tsv").read_text().splitlines()[1:]
    return {e: float(s) for e, s in (ln.split("\t")[:2] for ln in lines)}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli-ranks")
    return save_gpt2(d / "m", n_layer=2, n_head=2, n_embd=16, seed=0), _task(d / "t.jsonl", 15)


@pytest.mark.parametrize("method", ["eap-ig", "acdc"])
def test_two_workers_give_the_one_process_scores(small, tmp_path, method):
    model, task = small
    extra = ["--method", method] + (["--edges", "10"] if method == "eap-ig" else [])
    one = _discover(model, task, tmp_path / "one", *extra)
    two = _discover(model, task, tmp_path / "two", *extra, workers=2)
    assert one.returncode == 0, one.stderr[-2000:]
    assert two.returncode == 0, two.stderr[-2000:]
    _assert_same(tmp_path / "one", tmp_path / "two")
    run = json.loads((tmp_path / "two" / "run.json").read_text())
    assert run["params"]["ranks"] == 2
    assert two.stdout.count("written to") == 1  # rank 0 alone reports


def _kept(out: Path) -> set:
    edges = json.loads((out / "circuit.json").read_text())["edges"]
    return {(e["source"], e["target"], e.get("key")) for e in edges}


def _assert_same(one: Path, other: Path) -> None:
    """The same circuit, and scores equal to the files' 6 significant digits (the float64-
    derived bound on the scores themselves is tests/distributed/test_two_ranks.py's)."""
    a, b = _scores(one), _scores(other)
    assert a.keys() == b.keys()
    scale = max(abs(v) for v in a.values())
    assert all(abs(a[e] - b[e]) <= 1e-6 * scale + 1e-5 * abs(a[e]) for e in a)
    assert _kept(one) == _kept(other)  # ACDC: the same decisions


def _rank_pids(launcher: int) -> dict[int, int]:
    """rank -> pid of the launcher's children (the ranks torchrun's agent started)."""
    out = {}
    for pid in Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split():
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for kv in env:
            if kv.startswith(b"RANK="):
                out[int(kv[5:])] = int(pid)
    return out


def test_a_killed_rank_ends_the_job_in_one_line_and_the_checkpoint_resumes(tmp_path):
    model = save_gpt2(tmp_path / "m", n_layer=4, n_head=4, n_embd=32, seed=2)
    task = _task(tmp_path / "t.jsonl", 240)
    ckpt = tmp_path / "acdc.ckpt"
    acdc = ["--method", "acdc", "--set", "tau=0.001",
            "--set", f"checkpoint={ckpt}", "--set", "checkpoint_every=1"]
    job = _discover(model, task, tmp_path / "killed", *acdc, workers=3, wait=False)
    t0 = time.time()
    while not ckpt.exists() and job.poll() is None and time.time() - t0 < 300:
        time.sleep(0.05)
    assert job.poll() is None, "the job ended before its first checkpoint: make it longer"
    os.kill(_rank_pids(job.pid)[1], signal.SIGKILL)
    _, err = job.communicate(timeout=300)
    assert job.returncode == 128 + signal.SIGKILL
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: rank 1 of 3 failed: killed by "
                                                     "SIGKILL"), err[-2000:]
    assert ckpt.exists()
    resumed = _discover(model, task, tmp_path / "resumed", *acdc, workers=2)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    info = json.loads((tmp_path / "resumed" / "run.json").read_text())
    assert "resumed_from" in json.dumps(info)
    clean = _discover(model, task, tmp_path / "clean", *acdc[:-4])  # one process, no checkpoint
    assert clean.returncode == 0, clean.stderr[-2000:]
    _assert_same(tmp_path / "resumed", tmp_path / "clean")


def test_what_ranks_cannot_do_is_refused_in_one_line(small, tmp_path):
    model, task = small
    few = _discover(model, task, tmp_path / "few", "--method", "eap", "--examples", "2",
                    workers=3)
    assert few.returncode == 2
    assert few.stderr.strip().splitlines() == [
        "error: every rank (3) failed: 3 ranks need at least 3 examples, the task has 2; use "
        "fewer workers or more examples; the job was stopped"]
    other = _discover(model, task, tmp_path / "other", "--method", "eap-ig-act", workers=2)
    assert other.returncode == 2 and len(other.stderr.strip().splitlines()) == 1
    assert "method 'eap-ig-act' does not run on several ranks" in other.stderr
