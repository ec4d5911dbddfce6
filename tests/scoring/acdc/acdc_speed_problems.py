"""A problem builder for the ACDC speed tests (its own module: importing ``conftest`` by name
can pick another directory's conftest, depending on collection order)."""

from __future__ import annotations

import numpy as np

from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.scoring.acdc import visit_order
from acdc_engine.scoring.acdc.engine import Engine
from acdc_engine.tasks import prepare
from acdc_engine.testing import random_pairs


def make_problem(model, metric_name="kl_div", ablation="corrupted", n=10, batch_size=4, seed=0):
    metric = registry().metric(metric_name)
    data = prepare("rand", model.tokenizer, random_pairs(n, seed=seed))
    return Problem.build(model, data, metric, ablation, batch_size)


def engine_at_head(problem, layer, head, before_reset=None):
    """An engine about to test head ``a{layer}.{head}`` of ``problem``, whose only kept write
    is the logits, and the head's edges; ``before_reset(engine)`` may switch a shortcut off
    before the engine's first state is built."""
    problem = problem.with_metric(problem.metric)
    g = problem.graph
    keep = np.ones((g.n_writers, g.n_readers), dtype=bool)
    v = next(i for i, n in enumerate(g.nodes) if n.name == f"a{layer}.{head}")
    keep[v, g.mlp_slot(layer)] = False
    eng = Engine(problem, keep)
    if before_reset is not None:
        before_reset(eng)
    eng.reset()
    edges = dict(visit_order(g))[v]
    assert eng.begin_node(v, expected=len(edges))
    return eng, edges
