"""The set-based metric example of docs/plugins.md runs as written, as an in-process plugin."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from acdc_engine import plugins
from acdc_engine.api.setup import build_problem
from acdc_engine.patching import run

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOCS.read_text(), flags=re.S)
    (code,) = [b for b in blocks if b.startswith("# greater-than style")]
    return code


def test_the_set_metric_example_runs_and_gives_the_mass_difference(gpt2):
    ns: dict = {}
    exec(compile(_example(), str(DOCS), "exec"), ns)
    plugins.register(ns["GreaterThan"](), name="docs-greater-than")
    try:
        reg = plugins.registry()
        task = reg.task("years")
        problem, data = build_problem(gpt2, task, n_examples=4)
        assert problem.metric.name == "year_mass_diff"
        (value,) = problem.evaluate([None])
        (b,) = problem.batches
        with torch.no_grad():
            probs = run(gpt2.adapter, b.clean)[:, -1].double().softmax(-1)
        ids = gpt2.tokenizer.convert_tokens_to_ids
        want = [float(probs[i, ids(r["answer_set"])].sum() - probs[i, ids(r["wrong_set"])].sum())
                for i, r in enumerate(data.rows)]
        assert value == pytest.approx(sum(want) / len(want), abs=1e-6)
    finally:
        plugins.unregister("docs-greater-than")
