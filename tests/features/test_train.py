"""Training dictionaries (acdc_engine.features.train) and their figures (.stats) on a tiny
random GPT-2: the collected activations are what the MLP module reads and writes, training
lowers the fraction of variance unexplained, a seed makes it bit-for-bit repeatable, topk keeps
k features, the JumpReLU estimator's threshold gradient is the paper's, the figures of an exact
dictionary are exact, ``acdc dict`` trains and describes; the shipped transcoders load and fit
the shipped model."""

from __future__ import annotations

import random

import pytest
import torch

from acdc_engine.errors import AcdcError
from acdc_engine.evidence.sae import SAE as EvidenceSAE
from acdc_engine.features import SAE, CrossLayerTranscoder, TranscoderSet
from acdc_engine.features.stats import next_token_loss, reconstruction_figures
from acdc_engine.features.train import (TrainConfig, collect, jumprelu_ste, step_ste,
                                        train)
from acdc_engine.testing.builders import WORDS


def _texts(n=40, seed=0):
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))) for _ in range(n)]


@pytest.fixture(scope="module")
def mlp_acts(gpt2):
    return collect(gpt2, _texts(), site="mlp")


def test_collected_activations_are_the_mlp_modules_input_and_output(gpt2, mlp_acts):
    hf = gpt2.hf.transformer
    n_tokens = sum(len(t.split()) for t in _texts())
    assert mlp_acts.n_tokens == n_tokens and mlp_acts.layers == [0, 1]
    with torch.no_grad():
        for layer in mlp_acts.layers:
            x, y = mlp_acts.x[layer], mlp_acts.y[layer]
            assert torch.allclose(hf.h[layer].mlp(x), y, atol=1e-5, rtol=1e-5)
            assert x.shape == y.shape == (n_tokens, gpt2.adapter.d_model)


def test_collect_reads_a_llama_mlp_through_its_adapter(llama):
    acts = collect(llama, _texts(8, 5), site="mlp", layers=[1])
    mlp = llama.adapter.mlp_module(1)
    with torch.no_grad():
        assert torch.allclose(mlp(acts.x[0]), acts.y[0], atol=1e-5, rtol=1e-5)
    tc = train(collect(llama, _texts(8, 5), site="mlp"), TrainConfig(n_features=8, steps=3))
    assert tc.n_layers == llama.adapter.n_layers


def _fvu(d, acts):
    return sum(f.fvu for f in reconstruction_figures(d, acts)) / len(acts.layers)


@pytest.mark.parametrize("kind,activation,k", [("transcoder", "relu", None),
                                               ("transcoder", "topk", 4),
                                               ("transcoder", "jumprelu", None),
                                               ("clt", "relu", None)])
def test_training_lowers_fvu(mlp_acts, kind, activation, k):
    cfg = TrainConfig(kind=kind, activation=activation, n_features=32, k=k, steps=150,
                      batch_size=128, sparsity=1e-3, lr=1e-2)
    untrained = TrainConfig(**{**cfg.__dict__, "steps": 1, "lr": 0.0, "history": []})
    before, after = _fvu(train(mlp_acts, untrained), mlp_acts), _fvu(train(mlp_acts, cfg),
                                                                     mlp_acts)
    assert after < 0.1 * before and after < 0.5, (before, after)
    assert len(cfg.history) == (1 if kind == "clt" else 2)  # losses per dictionary


def test_training_is_deterministic_given_a_seed(mlp_acts):
    def once(seed):
        return train(mlp_acts, TrainConfig(kind="clt", n_features=16, steps=20,
                                           batch_size=128, seed=seed, activation="jumprelu"))

    a, b, c = once(0), once(0), once(1)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(),
                                                 b.state_dict().values()))
    assert not torch.equal(a.W_enc, c.W_enc)
    assert isinstance(a, CrossLayerTranscoder) and a.model == mlp_acts.model


def test_topk_dictionary_keeps_k_features(mlp_acts):
    tc = train(mlp_acts, TrainConfig(activation="topk", k=3, n_features=32, steps=5))
    assert isinstance(tc, TranscoderSet) and tc.n_layers == 2
    for layer in range(2):
        acts = tc.encode(layer, mlp_acts.x[layer])
        assert ((acts > 0).sum(-1) <= 3).all()


def test_jumprelu_estimator_gradients():
    pre = torch.tensor([[0.50, 0.98, 1.00, 1.04, 2.0]], requires_grad=True)
    th = torch.tensor([1.0, 1.0, 1.0, 1.0, 1.0], requires_grad=True)
    eps = 0.1
    out = jumprelu_ste(pre, th, eps)
    assert torch.equal(out.detach(), torch.tensor([[0.0, 0.0, 0.0, 1.04, 2.0]]))
    out.sum().backward()
    # d/dpre: 1 where active; d/dthreshold: -(th/eps) * K((pre - th)/eps), K = 1 on (-1/2, 1/2)
    assert torch.equal(pre.grad, torch.tensor([[0.0, 0.0, 0.0, 1.0, 1.0]]))
    assert torch.allclose(th.grad, torch.tensor([0.0, -10.0, -10.0, -10.0, 0.0]))
    th.grad = None
    step_ste(pre.detach(), th, eps).sum().backward()
    assert torch.allclose(th.grad, torch.tensor([0.0, -10.0, -10.0, -10.0, 0.0]))


def test_sae_training_and_exact_figures(gpt2):
    acts = collect(gpt2, _texts(20, 1), site="resid", layers=[0])
    assert torch.equal(acts.x[0], acts.y[0])
    sae = train(acts, TrainConfig(kind="sae", layer=0, n_features=24, steps=100,
                                  batch_size=128, lr=1e-2, sparsity=1e-3))
    assert isinstance(sae, SAE) and sae.layer == 0 and _fvu(sae, acts) < 0.5
    exact = EvidenceSAE.identity(gpt2.adapter.d_model, layer=0)  # relu(x) - relu(-x) = x
    (fig,) = reconstruction_figures(exact, acts)
    x = acts.x[0]
    assert fig.fvu < 1e-10
    assert fig.l0 == pytest.approx(float(((x != 0).sum(-1)).double().mean()))
    dead = ((x > 0).sum(0) == 0).sum() + ((x < 0).sum(0) == 0).sum()
    assert fig.dead == pytest.approx(float(dead) / (2 * x.shape[1]))


def test_next_token_loss_is_the_models_cross_entropy(gpt2):
    texts = _texts(6, 2)
    got = next_token_loss(gpt2, texts)
    tok = gpt2.tokenizer
    total, n = 0.0, 0
    with torch.no_grad():
        for t in texts:
            ids = torch.tensor([tok(t, add_special_tokens=False)["input_ids"]])
            logits = gpt2.hf.double()(ids).logits[0, :-1]
            total += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:],
                                                             reduction="sum"))
            n += ids.shape[1] - 1
    gpt2.hf.float()
    assert got == pytest.approx(total / n, rel=1e-5)
    exact = EvidenceSAE.identity(gpt2.adapter.d_model, layer=0)  # splices in x itself
    assert next_token_loss(gpt2, texts, exact) == pytest.approx(got, rel=1e-5)
    lossy = SAE(gpt2.adapter.d_model, 4, layer=0)
    assert abs(next_token_loss(gpt2, texts, lossy) - got) > 1e-3


def test_bad_training_settings_are_refused(mlp_acts):
    with pytest.raises(AcdcError, match="topk needs"):
        train(mlp_acts, TrainConfig(activation="topk", k=None))
    with pytest.raises(AcdcError, match="site 'resid'"):
        train(mlp_acts, TrainConfig(kind="sae"))
    with pytest.raises(AcdcError, match="unknown dictionary kind"):
        train(mlp_acts, TrainConfig(kind="nope"))


def test_cli_dict_train_and_info(gpt2_path, tmp_path, capsys):
    from acdc_engine.cli import main

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(_texts(30, 3)) + "\n")
    out = tmp_path / "run"
    rc = main(["dict", "train", "--model", str(gpt2_path), "--kind", "transcoder",
               "--features", "16", "--corpus", str(corpus), "--steps", "20", "--eval-lines",
               "10", "--out", str(out), "--no-track", "--batch-size", "64"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "FVU" in printed and "spliced" in printed
    assert main(["dict", "info", str(out / "dictionary.safetensors")]) == 0
    info = capsys.readouterr().out
    assert "transcoder_set" in info and "2 layers, d_model 16" in info and "layer 1: FVU" in info
    sae = SAE(16, 8, layer=1, activation="jumprelu", model="m")
    sae.save(tmp_path / "sae.safetensors")
    assert main(["dict", "convert", str(tmp_path / "sae.safetensors"), str(tmp_path / "sl"),
                 "--to", "saelens"]) == 0
    assert main(["dict", "convert", str(tmp_path / "sl"), str(tmp_path / "back.safetensors")]) == 0
    from acdc_engine.features import load_dictionary

    back = load_dictionary(tmp_path / "back.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(),
                                                 sae.state_dict().values()))


def test_shipped_transcoders_fit_the_shipped_model():
    from acdc_engine import load_model
    from acdc_engine.features import check_dictionary, shipped_transcoders

    model = load_model("gpt2-ioi-bpe")
    for kind in ("transcoders", "clt"):
        tc = shipped_transcoders(kind=kind)
        check_dictionary(tc, model)
        assert tc.n_layers == model.adapter.n_layers and tc.d_model == model.adapter.d_model
        assert tc.figures["fvu"] < 0.2 and tc.figures["l0"] < 100


@pytest.mark.slow  # collects activations over the whole shipped corpus (220 KB)
def test_cli_dict_train_defaults_to_the_shipped_corpus(gpt2_path, tmp_path, capsys):
    import json

    from acdc_engine.cli import main
    from acdc_engine.features.cards import shipped_corpus_path

    out = tmp_path / "run"
    rc = main(["dict", "train", "--model", str(gpt2_path), "--kind", "sae", "--layer", "0",
               "--features", "8", "--steps", "2", "--eval-lines", "10", "--out", str(out),
               "--no-track", "--batch-size", "64"])
    assert rc == 0 and "FVU" in capsys.readouterr().out
    params = json.loads((out / "run.json").read_text())["params"]
    assert params["corpus"] == str(shipped_corpus_path())
