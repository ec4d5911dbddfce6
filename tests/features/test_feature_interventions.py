"""Feature interventions: with the unedited run's errors fixed, ablating a feature changes the
residual stream by exactly its decoder vector times its activation (on a one-layer model the
logits are the unembedding of that), an edit that changes nothing changes nothing, the task
metric before the edit is the model's own, and bad edits are refused in one line."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.errors import AcdcError
from acdc_engine.features.cards import _resid_after
from acdc_engine.features.interventions import (
    FeatureEdit,
    intervene,
    intervene_on_prompt,
    intervene_task,
)
from acdc_engine.features.splice import spliced_run
from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.tasks import prepare
from acdc_engine.testing import random_pairs, save_gpt2
from acdc_engine.testing.dictionaries import random_transcoders


def _transcoders(model, n=24, seed=0):
    return random_transcoders(model, n, seed=seed, activation="relu", b_enc=-0.2)


@pytest.fixture(scope="module")
def gpt2_1layer(tmp_path_factory):
    from acdc_engine import load_model

    path = save_gpt2(tmp_path_factory.mktemp("gpt2-1l"), n_layer=1, seed=2)
    return load_model(str(path), device="cpu")


def test_ablation_moves_the_residual_by_the_decoder_vector(gpt2_1layer):
    model = gpt2_1layer
    tc = _transcoders(model)
    ids = torch.tensor([[3, 9, 14, 5, 22, 7]])
    with torch.no_grad():
        acts = spliced_run(model.adapter, ids, tc).acts[0][0, -1]  # [n] at the last token
        resid = _resid_after(model.adapter, ids, 0)[:, -1:]  # the model's final residual
    assert int((acts > 0).sum()) >= 2
    for f in (acts > 0).nonzero()[:2, 0].tolist():
        out = intervene(model, tc, ids, [FeatureEdit(0, f, positions=(5,))])
        with torch.no_grad():
            want = model.adapter.unembed(resid - acts[f] * tc.layers[0].W_dec[f])[0, 0]
            own = model.adapter.unembed(resid)[0, 0]
        assert torch.allclose(out.logits_before[0, 0], own, atol=1e-5)
        assert torch.allclose(out.logits_after[0, 0], want, atol=1e-5)
        assert not torch.allclose(out.logits_after, out.logits_before, atol=1e-4)
        # the same feature at another position does not reach the last token's logits
        # directly, only through nothing (one layer: the MLP is after attention)
        other = intervene(model, tc, ids, [FeatureEdit(0, f, positions=(2,))])
        assert torch.allclose(other.logits_after, other.logits_before, atol=1e-6)


def test_edits_that_change_nothing(gpt2):
    tc = _transcoders(gpt2)
    ids = torch.tensor([[4, 8, 15, 16, 23, 30]])
    with torch.no_grad():
        acts = spliced_run(gpt2.adapter, ids, tc).acts
    dead = int((acts[0][0].amax(0) <= 0).nonzero()[0, 0])  # never active on this prompt
    out = intervene(gpt2, tc, ids, [FeatureEdit(0, dead)])
    assert torch.equal(out.logits_after, out.logits_before)
    live = int(acts[1][0, 3].argmax())
    v = float(acts[1][0, 3, live])
    same = intervene(gpt2, tc, ids, [FeatureEdit(1, live, "clamp", v, positions=(3,))])
    assert torch.allclose(same.logits_after, same.logits_before, atol=1e-6)
    big = intervene(gpt2, tc, ids, [FeatureEdit(0, live, "clamp", 50.0)])
    assert (big.delta_logits.abs() > 1e-3).any()


def test_task_intervention_metric(gpt2):
    tc = _transcoders(gpt2)
    data = prepare("t", gpt2.tokenizer, random_pairs(8, seed=3))
    problem = Problem.build(gpt2, data, registry().metric("logit_diff"), "corrupted",
                            batch_size=4)
    own = problem.evaluate([None])[0]
    edits = [FeatureEdit(1, f, "corrupted") for f in range(24)]
    out = intervene_task(problem, tc, edits)
    assert out.metric_before == pytest.approx(own, abs=1e-5)
    assert out.metric_after != pytest.approx(own, abs=1e-4)
    assert len(out.top_before) == 8 and len(out.per_example[0]) == 8
    mean = intervene_task(problem, tc, [FeatureEdit(0, 1, "mean")])
    assert mean.edits[0].value is not None and mean.metric_before == pytest.approx(own, abs=1e-5)
    assert "metric" in out.summary()


def test_graph_page_call_and_refusals(gpt2):
    tc = _transcoders(gpt2)
    res = intervene_on_prompt(gpt2, tc, "w1 w2 w3", [(0, 2, 1)], 0.0)
    assert len(res["before"]) == 10 and len(res["after"]) == 10 and res["edits"]
    ids = torch.tensor([[1, 2, 3]])
    with pytest.raises(AcdcError, match="positions \\[7\\] are outside the prompt's 3 tokens"):
        intervene(gpt2, tc, ids, [FeatureEdit(0, 1, positions=(7,))])
    with pytest.raises(AcdcError, match="layer 5 is not one of the transcoders' layers 0..1"):
        intervene(gpt2, tc, ids, [FeatureEdit(5, 1)])
    with pytest.raises(AcdcError, match="unknown feature edit mode 'erase'"):
        FeatureEdit(0, 1, "erase")
    with pytest.raises(AcdcError, match="feature 99 is not in layer 0's 24 features"):
        intervene(gpt2, tc, ids, [FeatureEdit(0, 99)])


def test_predicted_vs_actual(gpt2_1layer, gpt2):
    from acdc_engine.features.attribution_graph import trace
    from acdc_engine.features.interventions import predicted_vs_actual

    # one layer: the only path from a feature to the logits is direct
    tc = _transcoders(gpt2_1layer)
    g = trace(gpt2_1layer, "w1 w2 w3 w4 w5", tc)
    check = predicted_vs_actual(g, model=gpt2_1layer, transcoders=tc, top=4)
    assert len(check.rows) == 4 and "ratio" in check.table()
    t = g.n_nodes - len(g.logit_ids)
    ids = g.input_tokens[None]
    with torch.no_grad():
        resid = _resid_after(gpt2_1layer.adapter, ids, 0)[:, -1:]
    tid = int(g.logit_ids[0])
    for r in check.rows:
        i = next(i for i in range(g.n_features) if g.node(i)[1:] == ("feature", r.layer,
                                                                    r.pos, r.feature)[1:])
        assert r.direct == pytest.approx(-float(g.adjacency_matrix[t, i]), rel=1e-6)
        assert r.predicted == pytest.approx(r.direct, rel=1e-5, abs=1e-7)
        d = tc.layers[0].W_dec[r.feature]
        with torch.no_grad():  # the actual change: the residual minus a x decoder, unembedded
            before = gpt2_1layer.adapter.unembed(resid)[0, 0].double()
            after = gpt2_1layer.adapter.unembed(resid - r.activation * d)[0, 0].double()
        want = (after[tid] - after.mean()) - (before[tid] - before.mean())
        assert r.actual == pytest.approx(float(want), abs=1e-5)
    # two layers: the prediction adds the paths through the layer-1 features
    tc2 = _transcoders(gpt2)
    g2 = trace(gpt2, "w1 w2 w3 w4 w5", tc2)
    A, s = g2.adjacency_matrix.double(), g2.n_features
    acts = g2.activation_values[g2.selected_features].double()
    t2 = g2.n_nodes - len(g2.logit_ids)
    rows = predicted_vs_actual(g2, model=gpt2, transcoders=tc2, top=6).rows
    for r in rows:
        i = next(i for i in range(s) if g2.node(i)[1:] == (r.layer, r.pos, r.feature))
        via = sum(A[t2, j] / acts[j] * A[j, i] for j in range(s) if acts[j] != 0)
        assert r.predicted == pytest.approx(float(-A[t2, i] - via), rel=1e-4, abs=1e-6)


def test_console_intervene_on_the_shipped_model():
    from acdc_engine.api.setup import build_problem, load_model, load_task
    from acdc_engine.features import shipped_path
    from acdc_engine.view import Session
    from acdc_engine.view.console import run_command

    try:
        shipped_path("gpt2-ioi-bpe")
    except AcdcError as e:
        pytest.skip(f"no shipped transcoders yet: {e}")
    lm = load_model("gpt2-ioi-bpe", device="cpu")
    problem, data = build_problem(lm, load_task("ioi-names"), n_examples=8, batch_size=8)
    s = Session(lm, problem, data, task="ioi-names", name="console test")
    out = run_command(s, "intervene 0:1 1:2@3=2.5")
    assert out["ok"], out["message"]
    assert out["intervention"]["edits"] == ["L0.f1 zero", "L1.f2@3 clamp=2.5"]
    assert out["intervention"]["metric_before"] == pytest.approx(problem.evaluate([None])[0],
                                                                 abs=1e-4)
    bad = run_command(s, "intervene 0-1")
    assert not bad["ok"] and "LAYER:FEATURE" in bad["message"]
