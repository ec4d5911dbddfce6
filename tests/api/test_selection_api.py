"""discover(selection=..., method=[...]): the new selections and ensembles end to end, and what
the run records about them."""

from __future__ import annotations

import json

import pytest
import torch

from acdc_engine import discover
from acdc_engine.circuit import prune_dead, select
from acdc_engine.errors import AcdcError
from acdc_engine.evaluation.selection import ensemble_scores, ilp_select, positive_first
from acdc_engine.tasks import Task
from acdc_engine.testing import random_pairs


@pytest.fixture(scope="module")
def task(gpt2_path):
    return Task("rand", lambda n, s: random_pairs(n or 12, seed=s), model=str(gpt2_path))


def _run(task, **kw):
    return discover(task=task, progress=False, track=False, render=False, **kw)


def test_ensemble_of_one_method_is_that_method(task):
    a = _run(task, method="eap", n_edges=12)
    b = _run(task, method=["eap"], ensemble="max", n_edges=12)
    assert torch.equal(a.circuit.keep, b.circuit.keep)
    assert torch.equal(a.scores, b.scores)


def test_ensemble_of_two_methods(task, tmp_path):
    r = _run(task, method=["eap", "eap-ig"], ensemble="mean", n_edges=12,
             settings={"ig_steps": 2}, out=tmp_path)
    eap = _run(task, method="eap", n_edges=12).scores
    ig = _run(task, method="eap-ig", n_edges=12, settings={"ig_steps": 2}).scores
    want = ensemble_scores([eap, ig], "mean")
    assert torch.allclose(r.scores, want, atol=1e-6)
    g = r.graph
    assert torch.equal(r.circuit.keep, prune_dead(g, select(g, r.scores, n_edges=12)))
    params = json.loads((tmp_path / "run.json").read_text())["params"]
    assert params["method"] == "eap,eap-ig" and params["ensemble"] == "mean"
    assert params["normalisation"] == "max" and params["selection"] == "topk"
    assert "--method eap,eap-ig" in json.loads((tmp_path / "run.json").read_text())["command"]


def test_ilp_selection(task, tmp_path):
    r = _run(task, method="eap", selection="ilp", n_edges=10, out=tmp_path)
    g = r.graph
    assert torch.equal(r.circuit.keep, ilp_select(g, r.scores, 10))
    assert 0 < r.circuit.number_of_edges() <= 10
    assert torch.equal(prune_dead(g, r.circuit.keep), r.circuit.keep)
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["params"]["selection"] == "ilp" and run["params"]["n_edges_requested"] == 10
    assert "--selection ilp" in run["command"] and "--edges 10" in run["command"]
    # the faithfulness reported is the ILP circuit's
    again = _run(task, method="eap", n_edges=10)
    assert r.faithfulness.full == pytest.approx(again.faithfulness.full)


def test_positive_and_bootstrap_selections(task, tmp_path):
    r = _run(task, method="eap", selection="positive", n_edges=8)
    assert r.params["metric"] == "logit_diff"  # higher is better: supporting edges score < 0
    assert torch.equal(r.circuit.keep, positive_first(r.graph, -r.scores, 8))
    b = _run(task, method="eap", selection="bootstrap", n_edges=8, bootstrap=3,
             min_frequency=1.0, out=tmp_path)
    freq = (tmp_path / "bootstrap_frequency.tsv").read_text().splitlines()
    assert len(freq) == 1 + b.graph.n_edges
    record = json.loads((tmp_path / "run.json").read_text())
    assert record["bootstrap"]["kind"] == "bootstrap resamples"
    assert len(record["bootstrap"]["circuits"]) == 3
    assert sorted(record["bootstrap"]["reference"]) == sorted(b.circuit.edge_names)
    assert b.params["selection"] == "bootstrap" and b.params["bootstrap"] == 3
    assert b.info["bootstrap_resamples"] == 3
    assert b.circuit.number_of_edges() <= b.info["bootstrap_edges_always"]


@pytest.mark.parametrize("kw, msg", [
    ({"selection": "greedy", "n_edges": 5}, "unknown selection 'greedy'"),
    ({"selection": "ilp"}, "needs a number of edges"),
    ({"selection": "bootstrap"}, "exactly one of"),
    ({"ensemble": "median", "n_edges": 5}, "unknown ensemble"),
    ({"normalisation": "z", "n_edges": 5}, "unknown normalisation"),
    ({"selection": "bootstrap", "n_edges": 5, "bootstrap": 0}, "bootstrap must be"),
    ({"selection": "bootstrap", "n_edges": 5, "min_frequency": 1.5}, "min_frequency"),
    ({"method": "eap,eap", "n_edges": 5}, "named twice"),
    ({"method": "eap,eap-ig", "n_edges": 5, "settings": {"tau": 1}}, "setting"),
    ({"selection": "ilp", "n_edges": 5, "stability": 2, "out": "x"}, "stability"),
    ({"method": "eap,eap-ig", "n_edges": 5, "stability": 2, "out": "x"}, "stability"),
])
def test_bad_selection_options_fail_before_loading(kw, msg, monkeypatch):
    import importlib

    d = importlib.import_module("acdc_engine.api.discover")
    monkeypatch.setattr(d, "recorded_setup", lambda *a, **k: pytest.fail("loaded a model"))
    with pytest.raises(AcdcError, match=msg):
        discover(task="ioi", **{"method": "eap", **kw}, track=False, progress=False)
