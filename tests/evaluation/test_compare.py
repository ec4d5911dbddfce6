"""Comparing circuits of a base model and its fine-tuned version."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from acdc_engine import discover
from acdc_engine.api import cross_faithfulness
from acdc_engine.evaluation.compare import compare_circuits
from acdc_engine.errors import AcdcError
from acdc_engine.plugins import register, unregister
from acdc_engine.hookspecs import hookimpl
from acdc_engine.tasks import Task
from acdc_engine.testing import random_pairs, word_tokenizer


@pytest.fixture(scope="module")
def tuned_path(gpt2_path, tmp_path_factory):
    """The tiny GPT-2 fine-tuned for a few steps to prefer each row's answer token."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gpt2_path)
    tok = word_tokenizer()
    rows = random_pairs(12)
    ids = torch.tensor([tok(r["clean"])["input_ids"] for r in rows])
    answers = torch.tensor([tok(r["answer"])["input_ids"][0] for r in rows])
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    torch.manual_seed(0)
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(model(ids).logits[:, -1], answers)
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = tmp_path_factory.mktemp("gpt2-tuned")
    model.save_pretrained(path)
    from acdc_engine.testing import save_tokenizer

    save_tokenizer(tok, path)
    return path


class _Task:
    @hookimpl
    def acdc_tasks(self):
        return [Task("pairs12", lambda n, s: random_pairs(12), default_n=12)]


@pytest.fixture(scope="module")
def circuits(gpt2_path, tuned_path):
    register(_Task(), name="pairs12-plugin")
    base = discover(model=str(gpt2_path), task="pairs12", method="eap", n_edges=15,
                    progress=False, track=False)
    tuned = discover(model=str(tuned_path), task="pairs12", method="eap", n_edges=15,
                     progress=False, track=False)
    yield base, tuned
    unregister("pairs12-plugin")


def test_a_circuit_equals_itself(circuits):
    base, _ = circuits
    same = compare_circuits(base.circuit, base.circuit)
    assert same.edge_jaccard == 1.0 and not same.only_a and not same.only_b
    assert same.score_spearman == pytest.approx(1.0)


def test_base_against_tuned(circuits):
    base, tuned = circuits
    diff = compare_circuits(base.circuit, tuned.circuit)
    n_a, n_b = base.circuit.number_of_edges(), tuned.circuit.number_of_edges()
    assert len(diff.shared) + len(diff.only_a) == n_a
    assert len(diff.shared) + len(diff.only_b) == n_b
    assert diff.edge_jaccard == pytest.approx(len(diff.shared) / (n_a + n_b - len(diff.shared)))
    assert diff.largest_changes[0][2] != diff.largest_changes[0][1]
    assert "shared" in diff.summary("base", "tuned")


def test_cross_faithfulness_diagonal_is_each_circuits_own(circuits, gpt2_path, tuned_path):
    base, tuned = circuits
    table = cross_faithfulness([base.circuit, tuned.circuit], [str(gpt2_path), str(tuned_path)])
    assert table[0][0] == pytest.approx(base.faithfulness.normalized, abs=1e-5)
    assert table[1][1] == pytest.approx(tuned.faithfulness.normalized, abs=1e-5)
    assert all(isinstance(v, float) for row in table for v in row)


def test_circuits_of_different_graphs_are_refused(circuits):
    base, _ = circuits
    other = base.circuit.to_networkx()
    other.graph["n_edges_total"] = 999
    with pytest.raises(AcdcError, match="different graphs"):
        compare_circuits(base.circuit, other)


def test_cli_compare(circuits, tmp_path):
    base, tuned = circuits
    a, b = base.circuit.save(tmp_path / "a.json"), tuned.circuit.save(tmp_path / "b.json")
    out = subprocess.run([sys.executable, "-m", "acdc_engine.cli", "compare", str(a), str(b)],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "Jaccard" in out.stdout


@pytest.fixture(scope="module")
def knocked_out_path(gpt2_path, tmp_path_factory):
    """The tiny GPT-2 with head a1.0 knocked out (its output projection zeroed): a planted
    change whose every edge out of a1.0 has score exactly 0 in the 'tuned' model."""
    from transformers import AutoModelForCausalLM

    from acdc_engine.testing import save_tokenizer

    model = AutoModelForCausalLM.from_pretrained(gpt2_path)
    dh = model.config.n_embd // model.config.n_head
    with torch.no_grad():
        model.transformer.h[1].attn.c_proj.weight[0:dh] = 0.0  # rows of head 0
    path = tmp_path_factory.mktemp("gpt2-knocked")
    model.save_pretrained(path)
    save_tokenizer(word_tokenizer(), path)
    return path


@pytest.mark.slow
def test_compare_models_finds_the_knocked_out_head(circuits, gpt2_path, knocked_out_path,
                                                   tmp_path):
    import json

    from acdc_engine.api.compare import compare_models

    out = tmp_path / "cmp"
    res = compare_models(str(gpt2_path), str(knocked_out_path), "pairs12", "eap", n_edges=15,
                         n_boot=200, out=out, progress=False)
    g = res.comparison
    head_edges = [d for d in res.deltas if d.edge.startswith("a1.0->")]
    assert not any(d.in_b for d in head_edges)  # the knocked-out head is in no tuned edge
    for d in head_edges:  # its scores are exactly 0 in the tuned model: change = -base score
        assert d.score_b == 0.0
        assert d.delta.point == pytest.approx(-d.score_a, abs=1e-6)
    assert {d.edge for d in res.deltas} == set(g.shared) | set(g.only_a) | set(g.only_b)
    # the diagonal of the cross table is each circuit in its own model
    assert res.cross[0][0] == pytest.approx(res.faithfulness[0], abs=1e-5)
    assert res.cross[1][1] == pytest.approx(res.faithfulness[1], abs=1e-5)
    data = json.loads((out / "comparison.json").read_text())
    assert data["only_base"] == g.only_a and len(data["deltas"]) == len(res.deltas)
    for f in ("diff.png", "deltas.png", "summary.txt", "run.json", "base/circuit.json",
              "tuned/circuit.json", "report.html"):
        assert (out / f).exists(), f
    page = (out / "report.html").read_text()
    assert "http" not in page and f"{len(res.significant)} of {len(res.deltas)}" in page
    assert res.run_id is not None
    from acdc_engine.records import store

    client = store.client(res.tracking_uri)
    run = client.get_run(res.run_id)
    assert run.data.metrics["edge_jaccard"] == pytest.approx(g.edge_jaccard)
    assert "changed beyond noise" in res.summary()


def test_cli_compare_discover_refuses_circuits_and_discover(tmp_path):
    out = subprocess.run([sys.executable, "-m", "acdc_engine.cli", "compare", "a.json",
                          "--discover", "x", "y"], capture_output=True, text=True)
    assert out.returncode == 2 and "not both" in out.stderr
