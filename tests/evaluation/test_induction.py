"""The induction task and the shipped attention-only toy model (toy-induction)."""

from __future__ import annotations

import json

import pytest
import torch



def test_pairs_are_induction_pairs():
    from acdc_tasks.induction import make_pairs

    rows = make_pairs(200, seed=1)
    assert rows == make_pairs(200, seed=1)  # deterministic
    for r in rows:
        c, k = r["clean"].split(), r["corrupted"].split()
        L, n = r["length"], r["k"]
        assert c[0] == k[0] == "BOS" and len(c) == len(k) == 1 + L + n
        first, second = c[1 : 1 + L], c[1 + L :]
        assert len(set(first)) == L and second == first[:n]  # distinct tokens, then a repeat
        assert r["answer"] == first[n]  # the token after the current one, first time round
        assert k[1 + L :] == second  # only the first occurrence is replaced ...
        assert not set(k[1 : 1 + L]) & set(first)  # ... by tokens it did not have
        assert r["wrong_answer"] == k[1 + n] != r["answer"]


@pytest.fixture(scope="module")
def toy():
    from acdc_engine import load_model

    return load_model("toy-induction", device="cpu")


@pytest.fixture(scope="module")
def data(toy):
    from acdc_engine.plugins import registry
    from acdc_engine.tasks import prepare

    task = registry().task("induction")
    return prepare(task, toy.tokenizer, task.rows(64, seed=7))


@pytest.fixture(scope="module")
def batches(toy, data):
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem

    return Problem.build(toy, data, registry().metric("logit_diff"), batch_size=64).batches


def test_the_toy_model_does_induction(toy, batches):
    assert toy.graph.attn_only and toy.graph.n_edges == 29
    hits = n = 0
    for b in batches:
        hits += int((toy.reference_logits(b.clean)[:, -1].argmax(-1) == b.answer).sum())
        n += len(b)
    assert hits / n >= 0.95


def test_ground_truth_heads_have_their_attention_patterns(toy):
    """The heads named in ground_truth.json attend as a previous-token / an induction head."""
    from acdc_engine.evaluation.groundtruth import ground_truth_for
    from acdc_tasks.induction import make_pairs

    gt = json.loads(open(toy.info["ground_truth"]).read())
    assert set(ground_truth_for(toy).edges) >= set(gt["k_composition_edges"])
    m = toy.hf
    prev = [int(h.split(".")[1]) for h in gt["previous_token_heads"]]
    ind = [int(h.split(".")[1]) for h in gt["induction_heads"]]
    p_score, i_score = torch.zeros(len(prev)), torch.zeros(len(ind))
    rows = make_pairs(32, seed=3)
    for r in rows:
        ids = torch.tensor([toy.tokenizer(r["clean"], add_special_tokens=False)["input_ids"]])
        pats, x = [], m.embed(ids)
        with torch.no_grad():
            for block in m.blocks:
                a = block.attn
                q = torch.einsum("bpd,hde->bhpe", x, a.W_Q) + a.b_Q[:, None]
                k = torch.einsum("bpd,hde->bhpe", x, a.W_K) + a.b_K[:, None]
                s = torch.einsum("bhpe,bhse->bhps", q, k) * a.scale
                p = ids.shape[1]
                s = s.masked_fill(torch.ones(p, p, dtype=torch.bool).triu(1), float("-inf"))
                pats.append(s.softmax(-1)[0])
                x = block(x)
        pos = torch.arange(1, ids.shape[1])
        p_score += pats[0][prev][:, pos, pos - 1].mean(-1) / len(rows)
        i_score += pats[1][ind][:, -1, r["k"] + 1] / len(rows)
    assert (p_score > 0.5).all(), p_score
    assert (i_score > 0.5).all(), i_score


@pytest.mark.parametrize("ablation", ["corrupted", "zero"])
def test_eap_ig_finds_the_k_composition(toy, data, ablation):
    """EAP-IG's top edges contain the K-composition edges (previous-token head -> induction
    head keys), under both ablations; with zero ablation it ranks the whole expected circuit
    above every other edge."""
    from acdc_engine.scoring import attribute
    from acdc_engine.evaluation.groundtruth import evaluate_ground_truth, ground_truth_for
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem

    gt = json.loads(open(toy.info["ground_truth"]).read())
    problem = Problem.build(toy, data, registry().metric("logit_diff"), ablation, 64)
    scores = attribute(problem, "eap-ig", ig_steps=5, progress=False)
    top = [toy.graph.edges[i].name for i in scores.abs().argsort(descending=True)[:10]]
    for edge in gt["k_composition_edges"]:
        assert edge in top, (edge, top)
    if ablation == "zero":
        assert evaluate_ground_truth(toy.graph, scores, ground_truth_for(toy))[
            "edge_roc_auc"] >= 0.95
