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
