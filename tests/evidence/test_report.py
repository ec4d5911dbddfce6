"""``acdc stability`` and ``acdc report`` on a recorded discovery of a tiny GPT-2."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from acdc_engine import discover
from acdc_engine.testing import random_pairs


@pytest.fixture(scope="module")
def run_dir(gpt2_path, tmp_path_factory):
    d = tmp_path_factory.mktemp("evidence-run")
    pairs = d / "pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(r) for r in random_pairs(12, seed=4)) + "\n")
    out = d / "run"
    discover(model=str(gpt2_path), task=str(pairs), method="eap", n_edges=12, out=out,
             progress=False, render=False)
    return out


@pytest.mark.slow
def test_stability_cli_writes_and_logs(run_dir):
    out = subprocess.run([sys.executable, "-m", "acdc_engine.cli", "stability", str(run_dir),
                          "-n", "2", "--boot", "100", "--threads", "1"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    st = json.loads((run_dir / "stability.json").read_text())
    record = json.loads((run_dir / "run.json").read_text())
    assert st["faithfulness"]["point"] == pytest.approx(record["metrics"]["faithfulness"],
                                                        abs=1e-5)
    assert st["faithfulness"]["low"] <= st["faithfulness"]["point"] <= st["faithfulness"]["high"]
    assert len(st["stability"]["circuits"]) == 2
    assert "Across 2 subsamples" in out.stdout
    from acdc_engine.records import store

    client = store.client(record["tracking_uri"])
    metrics = client.get_run(record["run_id"]).data.metrics
    assert metrics["faithfulness_ci_low"] == pytest.approx(st["faithfulness"]["low"])
    assert "stability_jaccard_mean" in metrics


@pytest.mark.slow
def test_report_is_one_offline_page(run_dir, tmp_path):
    from acdc_engine.api.evidence import report_for_run

    html, pdf, err = report_for_run(str(run_dir), out=tmp_path / "rep", n=2, n_boot=100,
                                    pdf=False)
    assert err is None
    text = html.read_text()
    for heading in ("Hypothesis", "Descriptive evidence", "Interventions", "What remains "
                    "uncertain"):
        assert heading in text
    # nothing is fetched from elsewhere: every src is a data URI, no http(s) link at all
    assert not re.search(r"https?://", text)
    assert all(s.startswith("data:image/png;base64,")
               for s in re.findall(r'src="([^"]*)"', text))
    assert text.count("<img") >= 8
    ev = json.loads((tmp_path / "rep" / "evidence.json").read_text())
    record = json.loads((run_dir / "run.json").read_text())
    assert ev["faithfulness"]["point"] == pytest.approx(record["metrics"]["faithfulness"],
                                                        abs=1e-5)
    assert f"{ev['faithfulness']['point']:.1%}" in text  # the sentence carries the number
    exe = shutil.which("chromium")
    if exe:  # headless Chromium renders it (no network needed) to a non-empty screenshot
        shot = tmp_path / "shot.png"
        subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu",
                        f"--screenshot={shot}", "--window-size=1000,2000", html.as_uri()],
                       capture_output=True, timeout=120)
        assert shot.exists() and shot.stat().st_size > 10_000
