"""Two gloo ranks on this machine give the one-process answer: EAP and EAP-IG scores and the
faithfulness curve within docs/numerics.md's float64-derived bound (a sharded sum adds the same
float32 terms in another grouping), ACDC's decisions identical.

The bound: ``|ranks32 - ref64| <= 4 |one32 - ref64| + 16 eps32 max|ref64|``, ``ref64`` the one-
process computation with the weights in float64 (tests/distributed/job.py runs the ranks).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest
import torch

from acdc_engine import load_model
from acdc_engine.testing import save_gpt2
from acdc_engine.testing.numerics import EPS32, assert_close_to_f64

sys.path.insert(0, str(Path(__file__).parent))
import job  # noqa: E402  (the ranks' own code, shared with this test)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_gpt2(tmp_path_factory.mktemp("gpt2-ranks"), n_layer=2, n_head=2, n_embd=16,
                     seed=0)


@pytest.fixture(scope="module")
def ranks_out(model_dir, tmp_path_factory):
    """What each of 2 ranks computed (rank order); torchrun's launcher runs in this process."""
    out = tmp_path_factory.mktemp("ranks") / "out.pt"
    assert job.main(str(model_dir), str(out), 2) == 0
    return torch.load(out, weights_only=False)


@pytest.fixture(scope="module")
def one(model_dir):
    """The same computations in one process: float32, and the float64 reference."""
    m32 = load_model(str(model_dir), device="cpu")
    m64 = load_model(str(model_dir), device="cpu", dtype=torch.float64)
    p32, p64 = job.problem_for(m32), job.problem_for(m64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one32, ref64 = job.compute(p32, p64), job.compute(p64, p64)
    one32["mask_opt"] = job.mask_opt(job.problem_for(m32, 8, 8, mixed=False))
    ref64["mask_opt"] = job.mask_opt(job.problem_for(m64, 8, 8, mixed=False))
    return one32, ref64


def test_examples_are_sharded_unevenly_across_batches(ranks_out):
    # 15 examples in batches 4+4+2 (length 6) and 4+1 (length 7): rank 0 takes 8, rank 1 7
    assert [r["n_local"] for r in ranks_out] == [8, 7]


def test_every_rank_holds_the_same_numbers(ranks_out):
    a, b = ranks_out
    for key in ("eap", "eap-ig", "acdc_keep", "acdc_scores"):
        assert torch.equal(a[key], b[key]), key
    assert a["acdc_decisions"] == b["acdc_decisions"] and a["curve"] == b["curve"]


@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_attribution_scores_equal_one_process_within_the_bound(ranks_out, one, method):
    one32, ref64 = one
    assert_close_to_f64(ranks_out[0][method], one32[method], ref64[method].double(),
                        what=f"{method} on 2 ranks")
    assert ranks_out[0][method].abs().max() > 1e-3  # not vacuous


def test_acdc_decisions_are_identical(ranks_out, one):
    _, ref64 = one  # ACDC runs on the float64 model in both
    got = ranks_out[0]
    assert got["acdc_decisions"] == ref64["acdc_decisions"]
    assert torch.equal(got["acdc_keep"], ref64["acdc_keep"])
    assert 0 < int(got["acdc_keep"].sum()) < got["acdc_keep"].numel()  # some edges pruned
    # scores are float64 differences stored in float32: one rounding apart at most
    scale = float(ref64["acdc_scores"].abs().max())
    assert float((got["acdc_scores"] - ref64["acdc_scores"]).abs().max()) <= 16 * EPS32 * scale


def test_faithfulness_curve_equals_one_process_within_the_bound(ranks_out, one):
    one32, ref64 = one
    assert_close_to_f64(ranks_out[0]["curve"], one32["curve"], ref64["curve"],
                        what="curve on 2 ranks")


def test_mask_optimization_steps_on_the_whole_batch_gradient(ranks_out, one):
    # one batch of 8 examples, 4 per rank: the example-weighted mean of the ranks' gradients
    # is the batch's, so every Adam step is the one-process step up to summation order
    one32, ref64 = one
    assert_close_to_f64(ranks_out[0]["mask_opt"], one32["mask_opt"], ref64["mask_opt"],
                        what="UGS scores on 2 ranks")
    assert torch.equal(ranks_out[0]["mask_opt"], ranks_out[1]["mask_opt"])
