"""When the run directory cannot be written late in a run (after the expensive scoring), the
scores and the run's outputs are kept somewhere else and the user is told where."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pytest
import torch

from acdc_engine.graph import Graph
from acdc_engine.records import Recorder, RunHandle, write_scores


@pytest.fixture(autouse=True)
def _kept_under_tmp_path(tmp_path, monkeypatch):
    """The rescue directories (tempfile.mkdtemp) go under the test's own tmp_path."""
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))


def test_scores_that_cannot_be_written_are_kept_elsewhere(tmp_path, capsys):
    g = Graph(n_layers=1, n_heads=1)
    scores = torch.arange(g.n_edges, dtype=torch.float32)  # [n_edges]
    target = tmp_path / "gone" / "edge_scores.tsv"  # its directory does not exist
    kept = write_scores(target, g, scores)
    err = capsys.readouterr().err
    assert kept != target and kept.name == "edge_scores.tsv"
    assert f"the scores are kept in {kept}" in err
    lines = kept.read_text().splitlines()
    assert lines[0] == "edge\tscore" and len(lines) == g.n_edges + 1
    assert lines[-1].endswith(f"\t{g.n_edges - 1}")


def test_a_run_directory_replaced_mid_run_is_rescued(tmp_path, capsys):
    out = tmp_path / "run"
    rec = Recorder(RunHandle("e"), "discover", out, {"run_id": "r1"})
    rec.ensure_dir()
    (out / "edge_scores.tsv").write_text("edge\tscore\n")  # written before the trouble
    shutil.rmtree(out)
    out.write_text("a file where the run directory was")  # e.g. a script gone wrong
    p = rec.path("circuit.json")
    p.write_text("{}")
    rec.finish()
    err = capsys.readouterr().err
    new = Path(rec.record["kept_in"])
    assert new != out and f"the run's outputs are kept in {new}" in err
    record = json.loads((new / "run.json").read_text())
    assert record["status"] == "FINISHED" and "circuit.json" in record["artifacts"]


def test_a_failed_run_whose_directory_vanished_keeps_run_json(tmp_path, capsys):
    out = tmp_path / "run"
    rec = Recorder(RunHandle("e"), "discover", out, {"run_id": "r2"})
    rec.ensure_dir()
    shutil.rmtree(out)
    out.write_text("")
    rec.fail(RuntimeError("boom"))
    record = json.loads((Path(rec.record["kept_in"]) / "run.json").read_text())
    assert record["status"] == "FAILED" and record["error"] == "RuntimeError: boom"
