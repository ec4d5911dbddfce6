"""Attribution scores stay what they were before the speed and memory work (issue 14).

``test_attr_speed_frozen.pt`` holds the EAP and EAP-IG(3) scores that the implementation before
that work gave on the shared fixtures' tiny models (GPT-2, a 3-layer GPT-2, Llama and Qwen2 with
grouped-query attention), for two metrics and the three ablations (made by computing
``attribute`` on these exact problems and saving the results). Chunking by example gives the
same scores up to float32 rounding.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.scoring import attribute
from acdc_engine.tasks import prepare
from acdc_engine.testing import random_pairs
from acdc_engine.testing.numerics import assert_close_to_f64, float64

FROZEN = Path(__file__).with_name("test_attr_speed_frozen.pt")
MODELS = ("gpt2", "gpt2_3layer", "llama", "qwen2")


@pytest.fixture(scope="module")
def frozen():
    return torch.load(FROZEN)


def _problem(lm, metric: str, ablation: str) -> Problem:
    data = prepare("t", lm.tokenizer, random_pairs(10, seed=3))
    return Problem.build(lm, data, registry().metric(metric), ablation, batch_size=4)


def _close(got: torch.Tensor, want: torch.Tensor, ref64: torch.Tensor, *magnitudes) -> None:
    """``got`` (this code, this CPU) and ``want`` (frozen: float32 where the suite was written)
    against ``ref64``, the same scores computed in float64 here."""
    assert got.shape == want.shape
    # bound: 4x the frozen float32 scores' error against float64 + 16 eps x max|score| (KL's EAP
    # scores are rounding noise ~1e-9, its gradient vanishing at the clean run: their magnitude
    # is that of the logit-difference scores the same deltas give, passed in ``magnitudes``)
    assert_close_to_f64(got, want, ref64, *magnitudes, factor=4, ulps=16)


def _ref64(lm, metric, ablation, method, steps, **kw):
    with float64(lm):
        return attribute(_problem(lm, metric, ablation), method, ig_steps=steps,
                         progress=False, **kw)


@pytest.mark.parametrize("name", MODELS)
def test_scores_equal_the_frozen_ones(name, frozen, request):
    lm = request.getfixturevalue(name)
    for metric in ("logit_diff", "kl_div"):
        for ablation in ("corrupted", "mean", "zero"):
            p = _problem(lm, metric, ablation)
            for method, steps in (("eap", 1), ("eap-ig", 3)):
                want = frozen[f"{name}/{metric}/{ablation}/{method}"]
                _close(attribute(p, method, ig_steps=steps, progress=False), want,
                       _ref64(lm, metric, ablation, method, steps),
                       frozen[f"{name}/logit_diff/{ablation}/{method}"])


@pytest.mark.parametrize("name", ["gpt2_3layer", "qwen2"])
@pytest.mark.parametrize("ablation", ["corrupted", "mean"])
def test_chunked_scores_equal_the_whole_batch_ones(name, ablation, frozen, request):
    lm = request.getfixturevalue(name)
    for method, steps in (("eap", 1), ("eap-ig", 3)):
        p = _problem(lm, "logit_diff", ablation)  # fresh: the pieces run their own corrupted
        want = frozen[f"{name}/logit_diff/{ablation}/{method}"]
        ref = _ref64(lm, "logit_diff", ablation, method, steps)
        for chunk in (1, 3):
            got = attribute(p, method, ig_steps=steps, progress=False, chunk=chunk)
            _close(got, want, ref)
        p.ablated(0)  # cached now: the pieces slice the cached corrupted run
        got = attribute(p, method, ig_steps=steps, progress=False, chunk=3)
        _close(got, want, ref)


def test_chunk_must_be_positive(gpt2):
    from acdc_engine.errors import AcdcError

    with pytest.raises(AcdcError, match="chunk"):
        attribute(_problem(gpt2, "logit_diff", "zero"), "eap", chunk=0)
