"""ACDC's pruning metric: KL by default, the task's metric on a one-entry output, and a metric
that cannot tell the full model from the empty circuit refused before any pruning."""

from __future__ import annotations

import pytest

from acdc_engine import discover
from acdc_engine.errors import AcdcError

RUN = dict(model="tracr-frac-prevs", task="tracr-frac-prevs", method="acdc", n_examples=12,
           track=False, progress=False, render=False)


def test_kl_on_a_one_entry_output_is_refused_before_pruning(monkeypatch):
    from acdc_engine.scoring.acdc import engine

    monkeypatch.setattr(engine.Engine, "begin_node", lambda *a: pytest.fail("pruning began"))
    with pytest.raises(AcdcError, match=r"pruning metric 'kl_div' gives the full model and the "
                                        r"empty circuit the same value \(0 and 0\).*one entry"
                                        r".*prune_metric='task'"):
        discover(**RUN, settings={"prune_metric": "kl_div"})


def test_cli_prune_metric_kl_on_a_one_entry_output_is_one_error_line(tmp_path, capsys):
    from acdc_engine.cli import main

    argv = ["discover", "--model", "tracr-frac-prevs", "--task", "tracr-frac-prevs",
            "--method", "acdc", "--pruning-metric", "kl_div", "--examples", "8", "--no-track",
            "--no-progress", "--no-render", "--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "pruning metric 'kl_div' gives the full model and the empty circuit" in err
    assert "Traceback" not in err


def test_the_default_prunes_a_one_entry_output_by_the_task_metric():
    r = discover(**RUN)
    assert r.info["prune_metric"] == "task" and r.params["prune_metric"] == "task"
    assert 0 < r.circuit.number_of_edges() < r.graph.n_edges
    assert r.faithfulness.full != r.faithfulness.empty
