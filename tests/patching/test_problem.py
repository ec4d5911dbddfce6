"""Problem: built once, caches the ablated runs and clean logits, evaluates masks."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.patching import Ablation
from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.tasks import prepare
from acdc_engine.testing import random_pairs


@pytest.fixture(scope="module")
def data(gpt2):
    return prepare("t", gpt2.tokenizer, random_pairs(10, seed=2))


def test_ablated_runs_are_computed_once_and_shared_with_other_metrics(gpt2, data, monkeypatch):
    calls = []
    original = Ablation.activations
    monkeypatch.setattr(Ablation, "activations",
                        lambda self, a, b: calls.append(1) or original(self, a, b))
    p = Problem.build(gpt2, data, registry().metric("logit_diff"), "corrupted", batch_size=4)
    p.evaluate([None, p.empty_mask()])
    p.evaluate([None])
    assert len(calls) == len(p.batches) == 3
    kl = p.with_metric(registry().metric("kl_div"))
    assert all(b.clean_logits is not None for b in kl.batches)
    assert p.batches[0].clean_logits is None  # the original problem is unchanged
    (full_kl,) = kl.evaluate([None])
    # the clean logits and the full model's are the same run, so d = z - c = 0 exactly and
    # the KL (computed from d) is 0 exactly
    assert len(calls) == 3 and full_kl == 0.0
    p.clear_cache()
    p.evaluate([None])
    assert len(calls) == 6


def test_faithfulness_of_full_and_empty(gpt2, data):
    p = Problem.build(gpt2, data, registry().metric("logit_diff"), "corrupted")
    g = p.graph
    full = p.faithfulness(torch.ones(g.n_writers, g.n_readers))
    empty = p.faithfulness(p.empty_mask())
    # an all-ones mask touches no reader, so the circuit's run is the full model's, and the
    # empty circuit's is the empty mask's run again: both bit for bit, the ratios exact
    assert full.circuit == full.full and full.normalized == 1.0
    assert empty.circuit == empty.empty and empty.normalized == 0.0
