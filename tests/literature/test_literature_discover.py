"""End to end: every literature task through ``acdc_engine.api.discover`` (EAP) on a GPT-2-style
and a Llama-style random model saved with a trained tokenizer; the tracr tasks on all
positions on the shipped tracr models."""

from __future__ import annotations

import math

import pytest
import torch

from acdc_engine import discover, load_model
from acdc_engine.plugins import registry
from acdc_engine.tasks import prepare
from acdc_engine.testing import check_task
from acdc_tasks.literature import GENERATORS

QUIET = dict(track=False, render=False, progress=False, curve=False)
# greater-than's answers follow " 17" without a space: the engine tokenizes them in context,
# so the SentencePiece-style tokenizer runs it too (alone, "32" would be "▁32")
CASES = ([(t, "gpt2", "byte-bpe") for t in GENERATORS]
         + [(t, "llama", "sentencepiece") for t in GENERATORS]
         + [("greater-than", "llama", "byte-bpe")])


@pytest.mark.parametrize("task,arch,tok_name", CASES)
def test_discover_eap(task, arch, tok_name, lit_models):
    model = lit_models[arch, tok_name]
    result = discover(model=model, task=task, method="eap", n_examples=8, n_edges=10, **QUIET)
    f = result.faithfulness
    assert all(math.isfinite(v) for v in (f.circuit, f.full, f.empty))
    assert f.full != pytest.approx(f.empty, abs=1e-7), "the corrupted pairs carry no signal"
    assert 0 < result.circuit.number_of_edges() <= 10
    assert torch.isfinite(result.scores).all() and result.scores.abs().sum() > 0
    # the rows were made for this model's tokenizer: its notes reach the run's parameters
    assert result.params.get("task.examples") == "8 of 8 kept", result.params


def test_full_circuit_is_faithful_on_every_position(lit_models):
    model = lit_models["gpt2", "byte-bpe"]
    result = discover(model=model, task="induction-random-all", method="eap", n_examples=8,
                      n_edges=model.graph.n_edges, **QUIET)
    assert result.faithfulness.normalized == pytest.approx(1.0, abs=1e-5)


def test_tracr_all_positions_match_the_programs():
    """The shipped programs output the per-position answers at every read position."""
    for name, model_id in (("tracr-reverse-all", "tracr-reverse"),
                           ("tracr-frac-prevs-all", "tracr-frac-prevs")):
        model = load_model(model_id, device="cpu")
        task = registry().tasks[name]
        check_task(task, model.tokenizer)
        rows = task.load_rows(16, 0, model.tokenizer)
        data = prepare(task, model.tokenizer, rows)
        for i, r in enumerate(rows):
            ids = torch.tensor([data.clean[i]])
            with torch.no_grad():
                out = model.hf(ids).logits[0, data.positions[i]]  # [k, vocab]
            assert data.positions[i] == list(range(1, len(data.clean[i])))
            if name == "tracr-reverse-all":
                assert out.argmax(-1).tolist() == data.answers[i], r
            else:
                assert out[:, 0].tolist() == pytest.approx(r["value"], abs=1e-3), r


@pytest.mark.slow
@pytest.mark.parametrize("task,method", [("tracr-reverse-all", "eap"),
                                         ("tracr-frac-prevs-all", "eap-ig")])
def test_tracr_all_discover(task, method):
    result = discover(task=task, method=method, n_examples=16, n_edges=10,
                      settings={"ig_steps": 3} if method == "eap-ig" else {}, **QUIET)
    f = result.faithfulness
    assert f.full != pytest.approx(f.empty) and math.isfinite(f.circuit)
