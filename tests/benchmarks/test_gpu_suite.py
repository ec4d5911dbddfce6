"""benchmarks/gpu_suite.sh: refuses without CUDA, plans every benchmark, and (slow) runs end to
end on CPU with tiny sizes into one JSON of figures."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and coreutils' timeout")


def suite(bench_dir, *args, env=None, timeout=120):
    e = {**os.environ, "PYTHON": sys.executable, **(env or {})}
    return subprocess.run(["bash", str(bench_dir / "gpu_suite.sh"), *args], env=e,
                          capture_output=True, text=True, timeout=timeout)


def test_refuses_without_cuda(bench_dir, tmp_path):
    r = suite(bench_dir, "--out", str(tmp_path / "out"), env={"CUDA_VISIBLE_DEVICES": ""})
    assert r.returncode == 2, r.stderr
    assert "no CUDA device" in r.stderr and "--device cpu --quick" in r.stderr
    assert not (tmp_path / "out").exists()  # nothing was started


def test_unknown_option_is_refused(bench_dir):
    r = suite(bench_dir, "--gpus", "2")
    assert r.returncode == 64 and "unknown option --gpus" in r.stderr


def test_dry_run_plans_every_benchmark_on_cuda_in_both_dtypes(bench_dir, tmp_path):
    r = suite(bench_dir, "--dry-run", "--out", str(tmp_path / "o"))
    assert r.returncode == 0, r.stderr
    budget, *plan = r.stdout.splitlines()
    assert budget.startswith("# budget 450s")  # + 10 s to kill a step + the JSON: < 8 min
    scripts = [line.split("] ")[1].split()[1].rsplit("/", 1)[1] for line in plan]
    assert scripts == ["invariants_check.py", "attribution_cost.py", "attribution_cost.py",
                       "position_cost.py", "scaling.py", "acdc_cost.py", "scaling.py",
                       "view_latency.py"]
    assert all("--device cuda" in line for line in plan)
    # invariants (both), attribution and scaling in each; positions in bf16; ACDC in float32
    assert sum("--dtype bfloat16" in line for line in plan) == 4
    assert sum("--dtype float32" in line or "bfloat16 float32" in line for line in plan) == 4
    limits = [int(line.split("<= ")[1].split("s]")[0]) for line in plan]
    assert max(limits) <= 120 and sum(limits) > 450  # the budget, not the limits, binds
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_cpu_rehearsal_writes_every_figure(bench_dir, tmp_path):
    out = tmp_path / "suite"
    r = suite(bench_dir, "--device", "cpu", "--quick", "--out", str(out), timeout=1900)
    assert r.returncode == 0, r.stderr + "".join(
        f"\n== {p.name}\n{p.read_text()[-2000:]}" for p in out.glob("*.err"))
    fig = json.loads((out / "gpu_suite.json").read_text())
    assert all(s["rc"] == 0 for s in fig["steps"].values()), fig["steps"]
    assert fig["positions"]["eap tokens"]["edges"] > fig["positions"]["eap"]["edges"]
    for dtype in ("bfloat16", "float32"):
        a = fig["attribution"][dtype]
        assert a["batch"] == 2 and a["pos"] == 8
        # the figures are there and are ratios of measured times (their values are the
        # benchmark's to report, not a test's to time: a busy CPU moves them either way)
        assert 0.0 < a["eap_ratio"] < 1e3 and 0.0 < a["eap_ig_ratio"] < 1e3
        assert a["rows"]["eap"]["tokens_per_s"] == pytest.approx(
            16 / a["rows"]["eap"]["seconds"])
        assert a["rows"]["eap"]["peak_mib"] > 0
        rows = fig["scaling"][dtype]["rows"]
        assert [(r["shape"], r["batch"], r["pos"]) for r in rows] == [
            ("gpt2-tiny", 2, 16), ("gpt2-tiny", 4, 32), ("gpt2-tiny", 2, 64)]
    inv = fig["invariants"]
    assert inv["passed"] and {(r["family"], r["dtype"]) for r in inv["results"]} == {
        ("gpt2", "bfloat16"), ("gpt2", "float32"), ("llama", "bfloat16"), ("llama", "float32")}
    assert fig["acdc"]["edges_per_s"] > 0 and fig["acdc"]["identical_decisions"] is True
    (view,) = fig["view"]  # tiny-ioi only (--skip-gpt2)
    assert view["examples"] > 0
    server = [v for k, v in view.items() if k.startswith("server_side")]
    assert server and all(v > 0 for v in server)
