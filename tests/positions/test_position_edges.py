"""Position-aware edges: the invariants of ARCHITECTURE.md, per position.

* A position-aware circuit with every edge kept reproduces the model, and with every edge
  removed the ablated (corrupted) run, on every family tested.
* Removing an edge at every position group is removing the unsplit edge (exact patching).
* The sum over positions of a position-split edge's EAP (and EAP-IG) score is the unsplit edge's
  score, and each split score is the exact first-order change: the gradient of the metric with
  respect to that mask entry (finite differences).
"""

from __future__ import annotations

import pytest
import torch

from acdc_engine.errors import AcdcError
from acdc_engine.plugins import registry
from acdc_engine.positions import PositionSplit
from acdc_engine.problem import Problem
from acdc_engine.scoring import attribute, exact_scores
from acdc_engine.tasks import prepare
from acdc_engine.testing.builders import random_pairs
from acdc_engine.testing.numerics import assert_close_to_f64, f32_bound, float64
from split_rows import named_rows


_rows = named_rows


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def model(request):
    return request.getfixturevalue(request.param)


def _problem(model, positions, metric="logit_diff", n=8, ablation="corrupted"):
    data = prepare("t", model.tokenizer, _rows(n))
    return Problem.build(model, data, _metric(metric), ablation, batch_size=4,
                         positions=positions)


def _eval64(model, positions, masks, **kw):
    """``_problem(model, positions, **kw).evaluate(masks)`` in float64 (the masks cast up
    exactly)."""
    with float64(model), torch.no_grad():
        p = _problem(model, positions, **kw)
        return p.evaluate([None if m is None else m.double() for m in masks])


def _logit_scale(p) -> float:
    """max |logit| of the clean runs: the scale of the logit differences the metric takes."""
    with torch.no_grad():
        return max(float(p.model.reference_logits(b.clean).abs().max()) for b in p.batches)


def test_named_split_reads_the_rows(gpt2):
    data = prepare("t", gpt2.tokenizer, _rows())
    split = PositionSplit.parse("named", data)
    assert split.names[-1] == "other" and set(split.names[:-1]) == {"A", "B", "END"}
    batch = data.batches(8)[0]
    lab = split.labels(batch)  # [B, P]
    names = split.names
    for i, row in enumerate(batch.rows):
        r = data.rows[row]
        assert names[lab[i, r["a_pos"]]] == "A" and names[lab[i, r["b_pos"]]] == "B"
        assert names[lab[i, -1]] == "END"
        assert (lab[i] == len(names) - 1).sum() == lab.shape[1] - 3
    sub = PositionSplit.parse("end, a", data)  # a subset, in token order; the rest is other
    assert sub.names == tuple(n for n in names if n in ("A", "END")) + ("other",)


def test_bad_splits_are_refused(gpt2):
    data = prepare("t", gpt2.tokenizer, _rows())
    with pytest.raises(AcdcError, match="unknown or repeated position"):
        PositionSplit.parse("IO", data)
    plain = prepare("t", gpt2.tokenizer, random_pairs(4))
    with pytest.raises(AcdcError, match="declares no named positions"):
        PositionSplit.parse("named", plain)
    rows = _rows(4)
    rows[2]["b_pos"] = rows[2]["a_pos"]
    with pytest.raises(AcdcError, match="row 3: A and B are one token"):
        PositionSplit.parse("named", prepare("t", gpt2.tokenizer, rows))
    mixed = prepare("t", gpt2.tokenizer, random_pairs(3, 5) + random_pairs(3, 6))
    with pytest.raises(AcdcError, match="prompts of one length"):
        PositionSplit.parse("tokens", mixed)


@pytest.mark.parametrize("positions", ["tokens", "named"])
def test_full_and_empty_position_circuits(model, positions):
    p = _problem(model, positions)
    plain = _problem(model, None)
    g = p.graph
    assert g.positions and g.n_edges == g.base.n_edges * g.n_groups
    full, empty, none = p.evaluate([g.full_mask(1.0), p.empty_mask(), None])
    full0, empty0 = plain.evaluate([None, plain.empty_mask()])
    # an all-ones mask touches no reader: the runs are the full model's, bit for bit
    assert full == none == full0
    # every writer removed in every group: the node fast path substitutes each writer once,
    # as in the plain graph, so the empty circuits are the same computation, bit for bit
    assert empty == empty0
    assert abs(full - empty) > 1e-3  # the check can fail: the two differ


def test_removing_every_position_is_removing_the_edge(model):
    p = _problem(model, "named")
    plain = _problem(model, None)
    g, base = p.graph, p.graph.base
    torch.manual_seed(0)
    keep = torch.rand(base.n_edges) > 0.4  # a random circuit, the same in both forms
    split_keep = keep.repeat(g.n_groups)
    a, b = p.evaluate([g.to_dense(split_keep.float())])[0], plain.evaluate(
        [base.to_dense(keep.float())])[0]
    (ref,) = _eval64(model, None, [base.to_dense(keep.float())])
    scale = _logit_scale(plain)
    # bound: 4x the unsplit run's float32 error against float64 + 16 eps max|logit| (the
    # metric is a difference of logits)
    assert_close_to_f64(a, b, ref, scale, factor=4, ulps=16, what="every group removed")
    # and removing it at one group only is something else (for some edge into a late reader)
    e = base.edge_index["input->logits"]
    one = g.full_mask(1.0)
    one[g.dense_index(g.edge_index["input->logits@END"])] = 0
    allm = plain.graph.full_mask(1.0)
    allm[base.dense_index(e)] = 0
    v_one, v_all = p.evaluate([one])[0], plain.evaluate([allm])[0]
    other = g.full_mask(1.0)
    other[g.dense_index(g.edge_index["input->logits@other"])] = 0
    (ref,) = _eval64(model, None, [allm])
    # logits read END only; bound as above: 4x the unsplit float32 error + 16 eps max|logit|
    assert_close_to_f64(v_one, v_all, ref, scale, factor=4, ulps=16, what="END only")
    # the 'other' group's correction never reaches the END row the logits read, which is
    # computed by the same operations as the full model's: bit for bit
    assert p.evaluate([other])[0] == p.evaluate([None])[0]


@pytest.mark.parametrize("method", ["eap", "eap-ig"])
@pytest.mark.parametrize("positions", ["tokens", "named"])
def test_split_scores_sum_to_the_unsplit_score(model, method, positions):
    p = _problem(model, positions)
    plain = _problem(model, None)
    s = attribute(p, method, ig_steps=3, progress=False)
    s0 = attribute(plain, method, ig_steps=3, progress=False)
    with float64(model):
        ref = attribute(_problem(model, None), method, ig_steps=3, progress=False)
    g = p.graph
    summed = s.view(g.n_groups, g.base.n_edges).sum(0)
    # bound: 4x the unsplit float32 score's error against float64 + 16 eps max|score| per
    # group summed (n_groups float32 roundings)
    assert_close_to_f64(summed, s0, ref, factor=4, ulps=16 * g.n_groups)
    # positions the metric cannot see (after END) carry nothing into the logits
    assert s.abs().max() > 0


def test_split_eap_is_the_first_order_change(gpt2):
    """Each split EAP score is -d metric / d mask[u, v, group] at the full model: finite
    differences on a few mask entries agree."""
    p = _problem(gpt2, "named", n=4).with_metric(_metric("logit_diff"))
    p.positions  # noqa: B018
    g = p.graph
    s = attribute(p, "eap", progress=False)
    top = s.abs().argsort(descending=True)[:4].tolist()
    masks = []
    for e in top:
        m = g.full_mask(1.0, dtype=torch.float64)
        m[g.dense_index(e)] = 1 - 1e-3
        masks.append(m)
    # the finite differences in float64 (float32 rounding / h would be ~1e-3 of noise)
    full, *values = _eval64(gpt2, "named", [None, *masks], n=4)
    for e, v in zip(top, values, strict=True):
        fd = (v - full) / 1e-3  # d metric / d (-mask)
        # bound: the second-order term of a step h = 1e-3, 5% of the score (a curvature
        # allowance, not rounding) + the float32 score's own rounding, 16 eps max|score|
        assert abs(fd - float(s[e])) <= 0.05 * abs(float(s[e])) + f32_bound(s), e


def test_exact_split_scores_chunked(gpt2):
    """Exact patching on a position-aware graph: one forward per split edge; removing an edge
    at a group the metric cannot read through anything (a token after... none here) and the
    chunked EAP equals the whole-batch EAP."""
    p = _problem(gpt2, "named", n=4)
    g = p.graph
    idx = [g.edge_index["input->logits@END"], g.edge_index["input->logits@A"]]
    ex = exact_scores(p, edges=idx, progress=False)
    assert float(ex[idx[1]]) == 0.0  # logits read END only: the same run, bit for bit
    assert abs(float(ex[idx[0]])) > 1e-4
    whole = attribute(p, "eap", progress=False)
    chunked = attribute(p, "eap", progress=False, chunk=1)
    with float64(gpt2):
        ref = attribute(_problem(gpt2, "named", n=4), "eap", progress=False)
    # bound: 4x the whole batch's float32 error against float64 + 16 eps max|score|
    assert_close_to_f64(chunked, whole, ref, factor=4, ulps=16)


def _metric(name):
    return registry().metric(name)


def test_token_chunks_give_the_same_split_scores(gpt2, monkeypatch):
    """The per-token products go in chunks on big models; any chunk size gives the same."""
    import acdc_engine.patching.token_groups as token_groups

    p = _problem(gpt2, "tokens", n=4)
    whole = attribute(p, "eap", progress=False)
    with float64(gpt2):
        ref = attribute(_problem(gpt2, "tokens", n=4), "eap", progress=False)
    monkeypatch.setattr(token_groups, "_TOKEN_CHUNK", 7)  # a few tokens per chunk
    # bound: 4x the unchunked float32 error against float64 + 16 eps max|score|
    assert_close_to_f64(attribute(p, "eap", progress=False), whole, ref, factor=4, ulps=16)
