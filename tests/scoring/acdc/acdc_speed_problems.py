"""A problem builder for the ACDC speed tests (its own module: importing ``conftest`` by name
can pick another directory's conftest, depending on collection order)."""

from __future__ import annotations

from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.tasks import prepare
from acdc_engine.testing import random_pairs


def make_problem(model, metric_name="kl_div", ablation="corrupted", n=10, batch_size=4, seed=0):
    metric = registry().metric(metric_name)
    data = prepare("rand", model.tokenizer, random_pairs(n, seed=seed))
    return Problem.build(model, data, metric, ablation, batch_size)
