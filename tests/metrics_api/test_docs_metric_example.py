"""The set-based metric example of docs/plugins.md runs as written, as an in-process plugin."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import torch

from acdc_engine import plugins
from acdc_engine.api.setup import build_problem
from acdc_engine.patching import run
from acdc_engine.testing.numerics import assert_close_to_f64, float64

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
        ids = gpt2.tokenizer.convert_tokens_to_ids

        def mean_mass_diff(f64: bool) -> float:
            """The metric by hand in float64, from the float32 run's logits or the float64
            run's."""
            with torch.no_grad(), (float64(gpt2) if f64 else contextlib.nullcontext()):
                lg = run(gpt2.adapter, b.clean)[:, -1].double()
            probs = lg.softmax(-1)
            want = [float(probs[i, ids(r["answer_set"])].sum()
                          - probs[i, ids(r["wrong_set"])].sum()) for i, r in enumerate(data.rows)]
            return sum(want) / len(want), float(lg.abs().max())

        (plain, scale), (ref, _) = mean_mass_diff(False), mean_mass_diff(True)
        # bound: 4x the hand computation's error from float32 logits + 16 eps max|logit|
        assert_close_to_f64(value, plain, ref, scale, factor=4, ulps=16, what="docs metric")
    finally:
        plugins.unregister("docs-greater-than")
