"""Problems on the tiny random models of tests/conftest.py, for the evidence tools."""

from __future__ import annotations

import pytest

from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.tasks import prepare
from acdc_engine.testing import random_pairs


def _make_problem(model, n=8, seed=3, metric="logit_diff", ablation="corrupted", batch_size=4):
    data = prepare("t", model.tokenizer, random_pairs(n, seed=seed))
    return Problem.build(model, data, registry().metric(metric), ablation, batch_size=batch_size)


def _behaving_problem(model, n=8, seed=3, ablation="corrupted", batch_size=4):
    """Random prompts whose answer is the model's own top word on the clean prompt and whose
    wrong answer is its top word on the corrupted one: the full model's logit difference is
    clearly positive and the corrupted run's negative, so faithfulness is well defined."""
    import torch

    tok = model.tokenizer
    rows = random_pairs(n, seed=seed)
    words = torch.tensor([i for t, i in tok.get_vocab().items() if t.startswith("w")])
    for r in rows:
        top = []
        for key in ("clean", "corrupted"):
            ids = torch.tensor([tok(r[key], add_special_tokens=False)["input_ids"]])
            logits = model.reference_logits(ids)[0, -1, words]
            top.append(logits.argsort(descending=True).tolist())
        a = words[top[0][0]]
        w = next(words[i] for i in top[1] if words[i] != a)
        r["answer"], r["wrong_answer"] = (" " + tok.convert_ids_to_tokens(int(x)) for x in (a, w))
    data = prepare("t", tok, rows)
    return Problem.build(model, data, registry().metric("logit_diff"), ablation,
                         batch_size=batch_size)


@pytest.fixture(scope="session")
def behaving_problem():
    """``behaving_problem(model, n=8, seed=3, ablation=..., batch_size=4)``."""
    return _behaving_problem


@pytest.fixture(scope="session")
def make_problem():
    """``make_problem(model, n=8, seed=3, metric=..., ablation=..., batch_size=4)``."""
    return _make_problem


@pytest.fixture(scope="module")
def gpt2_problem(gpt2):
    return _make_problem(gpt2)


@pytest.fixture(scope="module")
def tracr_problem(tracr):
    return _make_problem(tracr)
