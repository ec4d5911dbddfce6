"""``acdc sae train``: the exact feature effects are printed next to the gradient estimate."""

from __future__ import annotations

import json

import pytest

from acdc_engine.cli import main


@pytest.mark.slow
def test_sae_train_reports_exact_and_estimated_effects(tmp_path, capsys):
    rc = main(["sae", "train", "--layer", "1", "--features", "8", "--steps", "20",
               "--examples", "8", "--top", "2", "--threads", "1", "--out", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "gradient estimate" in out and out.count("(estimate ") == 2
    saved = json.loads((tmp_path / "sae.json").read_text())
    assert len(saved["feature_attribution"]) == 8  # every feature, from one backward
    assert set(saved["feature_effects"]) <= set(saved["feature_attribution"])
    assert (tmp_path / "sae.safetensors").exists()
