"""Every registered method in bfloat16 on CPU, against the same method in float32 (issue 26
item 6): GPU users run bfloat16, and no GPU has run this code, so the dtype path is checked here.

The tolerances, from bfloat16's 8 significant bits (unit roundoff u = 2^-8 = 3.9e-3):

* gradient attribution (a score is ``delta . grad`` summed over examples and positions): the
  4-layer model's bfloat16 activations and gradients are each within a few u of float32
  (docs/benchmarks.md measures the logits at 3u of the largest); a product of two such values
  is within the sum of their errors, so every score is within **8u (3.1%) of the largest
  |score|**, and the ranks agree (Spearman >= 0.99). Measured on tiny-ioi: at most 0.73%
  (eap-ig-act 0.47%, atp-qk 0.58%), Spearman >= 0.9994.
* mask optimization (30 Adam steps here): each step's rounding feeds the next, so no per-score
  bound follows; the learned masks must rank the edges alike (Spearman >= 0.99; measured
  0.9994) with the same 20 strongest edges but one.
* ACDC: it removes an edge when its patched effect is under ``tau``; effects within bfloat16's
  resolution of ``tau`` may fall either way, and a removal changes the effects measured after
  it, so the comparison is on the circuit: at least 95% of the edges' decisions agree, and the
  bfloat16 circuit's faithfulness in float32 is within 0.1 of the float32 circuit's.
"""

from __future__ import annotations

import pytest
import torch

from acdc_engine.api.pipeline import default_settings
from acdc_engine.api.setup import build_problem, load_model
from acdc_engine.plugins import registry

U = 2.0**-8  # bfloat16's unit roundoff
FAST = ["eap", "eap-clean-corrupted", "info-flow-routes"]
ATTRIBUTION = FAST + ["eap-ig", "atp-graddrop", "atp-qk", "eap-ig-act", "eap-gp"]
MASK_OPT = ["edge-pruning", "ugs"]
PATCHING = ["acdc", "acdc-guided"]
SETTINGS = {"edge-pruning": {"steps": 30}, "ugs": {"steps": 30}}


@pytest.fixture(scope="module")
def problems():
    """tiny-ioi's IOI problem (16 examples) in float32 and in bfloat16."""
    task = registry().task("ioi")
    out = {}
    for dtype in ("float32", "bfloat16"):
        model = load_model("tiny-ioi", device="cpu", dtype=dtype)
        out[dtype], _ = build_problem(model, task, n_examples=16, batch_size=16)
    return out


def _run(problem, name):
    method = registry().method(name)
    given = SETTINGS.get(name, {})
    settings, _ = default_settings(problem, method.configure(given), given)
    torch.manual_seed(0)
    return method.run(problem, settings, False)


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ra = a.argsort().argsort().double()
    rb = b.argsort().argsort().double()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra @ rb) / (ra.norm() * rb.norm()))


def _both(problems, name):
    a, b = (_run(problems[d], name) for d in ("float32", "bfloat16"))
    assert a.scores.dtype == b.scores.dtype == torch.float32
    ok = torch.isfinite(a.scores) & torch.isfinite(b.scores)
    assert torch.equal(ok, torch.isfinite(a.scores)), f"{name}: bfloat16 lost finite scores"
    return a, b, ok


def test_every_registered_method_is_checked():
    """A new method fails here until it is given a bfloat16 check below."""
    names = {line.split(" ", 1)[1] for lines in registry().by_plugin().values()
             for line in lines if line.startswith("method ")}
    assert names == set(ATTRIBUTION + MASK_OPT + PATCHING)


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow)
                                  for n in ATTRIBUTION])
def test_attribution_in_bfloat16(problems, name):
    a, b, ok = _both(problems, name)
    s32, s16 = a.scores[ok], b.scores[ok]
    err = float((s32 - s16).abs().max() / s32.abs().max())
    assert err <= 8 * U, f"{name}: largest error {err:.4f} of the largest score"
    assert _spearman(s32, s16) >= 0.99


@pytest.mark.slow
@pytest.mark.parametrize("name", MASK_OPT)
def test_mask_optimization_in_bfloat16(problems, name):
    a, b, ok = _both(problems, name)
    s32, s16 = a.scores[ok], b.scores[ok]
    assert _spearman(s32, s16) >= 0.99
    top = set(s32.topk(20).indices.tolist()) & set(s16.topk(20).indices.tolist())
    assert len(top) >= 19


@pytest.mark.slow
@pytest.mark.parametrize("name", PATCHING)
def test_patching_in_bfloat16(problems, name):
    a, b, _ = _both(problems, name)
    assert a.keep is not None and b.keep is not None
    agree = float((a.keep == b.keep).float().mean())
    assert agree >= 0.95, f"{name}: {agree:.3f} of the decisions agree"
    p32 = problems["float32"]
    g = p32.graph
    faith = [p32.faithfulness(g.mask_from_edges(k)).normalized for k in (a.keep, b.keep)]
    assert abs(faith[0] - faith[1]) <= 0.1, faith
