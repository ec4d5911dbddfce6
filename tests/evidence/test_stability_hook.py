"""``discover(stability=N)`` / ``acdc discover --stability N``: evidence right after discovery."""

from __future__ import annotations

import pytest

from acdc_engine.errors import AcdcError


def test_stability_needs_a_recorded_run(gpt2_path):
    from acdc_engine import discover

    with pytest.raises(AcdcError, match="stability needs a recorded run"):
        discover(str(gpt2_path), "ioi", "eap", n_edges=5, stability=2, track=False)


@pytest.mark.slow
def test_discover_with_stability_reports_sentences(tmp_path):
    from acdc_engine import discover

    r = discover(task="ioi", method="eap", n_edges=40, n_examples=16, stability=2,
                 out=tmp_path / "run", track=False, progress=False, render=False, threads=1)
    assert r.stability["sentences"] and (tmp_path / "run" / "stability.json").is_file()
