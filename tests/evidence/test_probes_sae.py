"""Linear probes (planted feature, shuffled control) and SAEs (identity dictionary, splicing)."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.evidence.probes import fit_probes, probe_task, task_labels
from acdc_engine.evidence.sae import (
    SAE,
    feature_effects,
    sae_stats,
    spliced_metric,
    top_activations,
    train_sae,
)
from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.tasks import prepare
from acdc_engine.testing import random_pairs


def test_probe_finds_a_planted_linear_feature_and_the_control_does_not():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 12, generator=gen)
    w = torch.randn(12, generator=gen)
    y = (x @ w > 0).long()
    noise = torch.randn(400, 12, generator=gen)
    res = fit_probes(torch.stack([noise, x]), y.tolist())  # layer 0: noise, layer 1: feature
    assert res.accuracy[1] >= 0.95
    assert abs(res.accuracy[0] - 0.5) < 0.15  # noise: chance
    assert abs(res.control[1] - 0.5) < 0.15  # shuffled labels: chance, even on the feature
    assert res.chance == pytest.approx(0.5, abs=0.1)
    assert "decodable best after layer 1" in res.sentences()[0]


def test_probe_task_reads_a_direction_of_the_embeddings(gpt2):
    """The label is which side of a fixed direction the first token's embedding lies on: a
    linear feature of the residual stream at position 0 after the embeddings."""
    rows = random_pairs(120, seed=9)
    tok = gpt2.tokenizer
    w = torch.randn(gpt2.adapter.d_model, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        proj = {word: float(gpt2.adapter.embed(torch.tensor([[tok.convert_tokens_to_ids(word)]]))
                            [0, 0] @ w) for word in {r["clean"].split()[0] for r in rows}}
    cut = sorted(proj.values())[len(proj) // 2]
    gap = 0.1 * (max(proj.values()) - min(proj.values()))  # a margin, as a planted feature has
    rows = [r for r in rows if abs(proj[r["clean"].split()[0]] - cut) > gap]
    for r in rows:
        r["side"] = int(proj[r["clean"].split()[0]] >= cut)
    data = prepare("t", tok, rows)
    problem = Problem.build(gpt2, data, registry().metric("logit_diff"), "zero", batch_size=60)
    res = probe_task(problem, data, "side", position=0)
    assert len(res.accuracy) == gpt2.graph.n_layers + 1
    assert res.accuracy[0] >= 0.95
    assert res.control[0] < 0.75
    assert task_labels(data, "answer") == data.answer


@pytest.fixture(scope="module")
def problem(gpt2):
    data = prepare("t", gpt2.tokenizer, random_pairs(12, seed=2))
    return Problem.build(gpt2, data, registry().metric("logit_diff"), "corrupted", batch_size=6)


@pytest.mark.parametrize("layer", [-1, 0, 1])
def test_identity_sae_reconstructs_exactly_and_splices_to_the_clean_metric(problem, layer):
    sae = SAE.identity(problem.model.adapter.d_model, layer)
    st = sae_stats(problem, sae)
    assert st.mse < 1e-10
    assert st.metric_spliced == pytest.approx(st.metric_clean, abs=1e-4)


def test_splicing_a_zero_reconstruction_is_zero_ablating_the_stream(problem):
    """Decoding nothing: readers above layer 0 see an all-zero residual stream from layer 0's
    writers, i.e. every edge from input and layer-0 nodes into them is zero-ablated."""
    g = problem.graph
    sae = SAE.identity(problem.model.adapter.d_model, 0)
    got = spliced_metric(problem, sae, edit=lambda f: torch.zeros_like(f))
    mask = torch.ones(g.n_writers, g.n_readers)
    first = g.readers_per_layer
    mask[: g.attn_upstream(1), first:] = 0
    # the layer-0 attention bias is part of the stream too: zero it the same way
    bias = problem.model.adapter.attn_bias(0)
    want = []
    for b in problem.batches:
        from acdc_engine.patching import LAST, PatchPlan, run, run_with_writers

        _, acts = run_with_writers(problem.model.adapter, b.clean)
        abl = torch.zeros_like(acts)
        abl[0] = -bias  # input's replacement cancels the bias: the stream is exactly 0
        logits = run(problem.model.adapter, b.clean, PatchPlan(mask=mask, ablated=abl), LAST)
        want.append(problem.metric(logits[:, -1], b))
    assert torch.allclose(got, torch.cat(want), atol=1e-4)


def test_train_save_load_and_features(problem, tmp_path):
    sae = train_sae(problem, layer=0, n_features=32, steps=300)
    st = sae_stats(problem, sae)
    assert st.fraction_unexplained < 0.5 and 0 < st.l0 <= 32
    back = SAE.load(sae.save(tmp_path / "sae.safetensors"))
    assert back.layer == 0
    assert sae_stats(problem, back).mse == pytest.approx(st.mse, rel=1e-5)
    eff = feature_effects(problem, sae, top=3)
    assert len(eff) == 3
    top = top_activations(problem, sae, feature=next(iter(eff)), k=3)
    assert len(top) <= 3 and all(isinstance(t, str) for _, t in top)


# ----- second round of hostile inputs (docs/reliability.md, Evidence tools) ----------------------
def test_probe_split_must_leave_examples_on_both_sides():
    """Before: train=1 was clamped to a 62/2 split without a word."""
    from acdc_engine.errors import AcdcError
    from acdc_engine.evidence.probes import check_split

    x = torch.randn(2, 64, 4, generator=torch.Generator().manual_seed(0))
    y = [i % 2 for i in range(64)]
    with pytest.raises(AcdcError, match=r"training share must be a number in \(0, 1\)"):
        fit_probes(x, y, train=1.0)
    with pytest.raises(AcdcError, match="trains on 63 and tests on 1; each side needs at least "
                                        "2: use a share from 0.0312 to 0.969"):
        fit_probes(x, y, train=0.99)
    with pytest.raises(AcdcError, match="3 examples are too few to probe"):
        check_split(0.5, 3)
    assert check_split(0.7, 64) == 45


def test_probe_says_decodable_only_above_the_majority_class():
    """Before: "is decodable" at 0% accuracy, or below the majority class."""
    from acdc_engine.evidence.probes import ProbeResult, wilson

    lo, hi = wilson(0.5, 20)
    assert lo == pytest.approx(0.2993, abs=1e-3) and hi == pytest.approx(0.7007, abs=1e-3)
    zero = ProbeResult("lbl", [0.0, 0.5], [0.5, 0.5], 1.0, 62, 2)
    assert not zero.decodable()
    assert zero.sentences()[0].startswith("Label 'lbl' is not decodable above the majority "
                                          "class at any layer: the best probe, after layer 1,")
    below = ProbeResult("lbl", [0.55, 0.58], [0.5, 0.47], 0.68, 45, 19)
    assert not below.decodable() and "is not decodable" in below.sentences()[0]
    close = ProbeResult("lbl", [0.75], [0.5], 0.6, 45, 20)  # above, but within the interval
    assert not close.decodable()
    clear = ProbeResult("lbl", [0.3, 0.95], [0.5, 0.16], 0.21, 45, 19)
    assert clear.decodable() and clear.sentences()[0].startswith(
        "Label 'lbl' is decodable best after layer 1 (95% held-out accuracy on 19 examples, "
        "95% interval [")
    assert clear.as_dict()["decodable"] is True and clear.as_dict()["best_layer"] == 1


def test_probe_position_outside_the_prompts_is_refused(gpt2_problem):
    from acdc_engine.errors import AcdcError

    data = prepare("t", gpt2_problem.model.tokenizer, random_pairs(8, seed=3))
    n = min(b.clean.shape[1] for b in gpt2_problem.batches)
    with pytest.raises(AcdcError, match=f"position {n} is outside the prompts: the shortest is "
                                        f"{n} tokens"):
        probe_task(gpt2_problem, data, "answer", position=n)
    with pytest.raises(AcdcError, match=f"-{n} to -1 from the end"):
        probe_task(gpt2_problem, data, "answer", position=-n - 1)


def test_sae_files_that_are_not_saes_are_refused(tmp_path):
    from safetensors.torch import save_file

    from acdc_engine.errors import AcdcError

    with pytest.raises(AcdcError, match="does not exist"):
        SAE.load(tmp_path / "missing.safetensors")
    with pytest.raises(AcdcError, match="is not a file"):
        SAE.load(tmp_path)
    (tmp_path / "rnd.safetensors").write_bytes(bytes(range(256)) * 16)
    with pytest.raises(AcdcError, match=r"is not a readable safetensors file \(4096 bytes;"):
        SAE.load(tmp_path / "rnd.safetensors")
    good = SAE(8, 4).save(tmp_path / "good.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(good[: len(good) // 2])
    with pytest.raises(AcdcError, match="is not a readable safetensors file"):
        SAE.load(tmp_path / "cut.safetensors")
    save_file({"W_enc": torch.zeros(8, 4), "W_dec": torch.zeros(4, 6), "b_enc": torch.zeros(4),
               "b_dec": torch.zeros(8)}, tmp_path / "odd.safetensors")
    with pytest.raises(AcdcError, match=r"not a consistent SAE: W_enc is \(8, 4\), so W_dec "
                                        r"\(4, 6\) \(expected \(4, 8\)\)"):
        SAE.load(tmp_path / "odd.safetensors")


def test_sae_layer_and_width_must_fit_the_model(problem):
    from acdc_engine.errors import AcdcError
    from acdc_engine.evidence.sae import check_sae

    n = problem.graph.n_layers
    with pytest.raises(AcdcError, match=f"layer 99 is not in model .*, which has {n} layers"):
        train_sae(problem, layer=99, n_features=4, steps=1)
    with pytest.raises(AcdcError, match="L1 penalty must be a finite number >= 0, got -1"):
        train_sae(problem, layer=0, n_features=4, steps=1, l1=-1.0)
    d = problem.model.adapter.d_model
    with pytest.raises(AcdcError, match=f"the SAE reads {d + 1}-dimensional activations"):
        sae_stats(problem, SAE(d + 1, 4))
    with pytest.raises(AcdcError, match="layer 7 is not in model"):
        check_sae(problem, SAE(d, 4, layer=7))
