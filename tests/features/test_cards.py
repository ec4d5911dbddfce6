"""Feature cards: the contexts are the argmax contexts (brute force over a tiny corpus), the
logit effects equal a direct computation, the density is the active share, and the cache is
keyed by the dictionary's content and the corpus."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.errors import AcdcError
from acdc_engine.features.cards import (
    dictionary_hash,
    feature_activations,
    feature_card,
    logit_effects,
)
from acdc_engine.features.dictionary import SAE
from acdc_engine.features.splice import spliced_run
from acdc_engine.testing.dictionaries import random_transcoders


def _transcoders(model, n=24, seed=0, bias=-0.3):
    # sparse: most features off at most tokens
    return random_transcoders(model, n, seed=seed, activation="relu", b_enc=bias)


def _corpus(n=7, seed=1):
    g = torch.Generator().manual_seed(seed)
    # rows of different lengths: padding must not change anything
    return [torch.randint(1, 40, (int(torch.randint(3, 9, (1,), generator=g)),),
                          generator=g).tolist() for _ in range(n)]


def test_contexts_are_the_argmax_contexts(gpt2, tmp_path):
    tc = _transcoders(gpt2)
    corpus = _corpus()
    layer = 1
    # brute force: each text alone, every token's activation
    found = []
    for row in corpus:
        with torch.no_grad():
            acts = spliced_run(gpt2.adapter, torch.tensor([row]), tc).acts[layer][0]  # [p, n]
        found.append(acts)
    n_tok = sum(len(r) for r in corpus)
    for feature in range(tc.layers[layer].n_features):
        allv = [(float(a[p, feature]), ex, p) for ex, a in enumerate(found)
                for p in range(a.shape[0])]
        active = [t for t in allv if t[0] > 0]
        card = feature_card(gpt2, tc, layer, feature, corpus, k=3, cache_dir=tmp_path)
        want = sorted(active, key=lambda t: -t[0])[:3]
        # the top values (ties between equal prompts' prefixes may come in either order),
        # each at a place where brute force finds that value
        assert [c.activation for c in card.contexts] == pytest.approx(
            [v for v, _, _ in want], rel=1e-5, abs=1e-6)
        for c in card.contexts:
            assert float(found[c.example][c.position, feature]) == pytest.approx(
                c.activation, rel=1e-5, abs=1e-6)
        assert card.density == pytest.approx(len(active) / n_tok)
        assert card.n_tokens == n_tok
        if active:
            assert card.mean_activation == pytest.approx(
                sum(v for v, _, _ in active) / len(active), rel=1e-5)
            c = card.contexts[0]
            assert c.tokens[c.marked] == gpt2.tokenizer.decode([corpus[c.example][c.position]])
            assert "[[" in c.text and card.to_dict()["contexts"][0]["text"] == c.text


def test_logit_effects_equal_a_direct_computation(gpt2):
    tc = _transcoders(gpt2)
    ln_f, W_U = gpt2.hf.transformer.ln_f, gpt2.hf.lm_head.weight
    for layer, feature in [(0, 3), (1, 11)]:
        d = tc.layers[layer].W_dec[feature].detach().double()
        want = W_U.double() @ (ln_f.weight.double() * (d - d.mean()))
        got = logit_effects(gpt2, tc, layer, feature).double()
        # float32: |error| <= a few ulps of sum |terms| (d_model 16 terms)
        bound = 1e-5 * (W_U.double().abs() @ (ln_f.weight.double() * (d - d.mean())).abs())
        assert ((got - want).abs() <= bound + 1e-7).all()
        card = feature_card(gpt2, tc, layer, feature, _corpus(), k=4, cache_dir=False)
        assert [v for _, v in card.promoted] == pytest.approx(
            want.topk(4).values.tolist(), rel=1e-4, abs=1e-6)
        assert [v for _, v in card.suppressed] == pytest.approx(
            want.topk(4, largest=False).values.tolist(), rel=1e-4, abs=1e-6)


def test_cache_is_keyed_by_dictionary_and_corpus(gpt2, tmp_path):
    tc = _transcoders(gpt2)
    corpus = _corpus()
    a = feature_card(gpt2, tc, 0, 2, corpus, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.pt"))
    assert len(files) == 1 and a.dictionary_hash in files[0].name
    assert feature_card(gpt2, tc, 0, 5, corpus, cache_dir=tmp_path).corpus_hash == a.corpus_hash
    assert len(list(tmp_path.glob("*.pt"))) == 1  # the second card read the layer's summary
    other = _transcoders(gpt2, seed=1)
    assert dictionary_hash(other) != dictionary_hash(tc)
    feature_card(gpt2, other, 0, 2, corpus, cache_dir=tmp_path)
    feature_card(gpt2, tc, 0, 2, corpus[:-1], cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 3


def test_sae_card_reads_the_residual_stream(gpt2):
    from acdc_engine.evidence.descriptive import residual_stream

    torch.manual_seed(0)
    sae = SAE(gpt2.adapter.d_model, 10, layer=0)
    ids = torch.tensor(_corpus(n=1)[0])[None]
    want = sae.encode(residual_stream(gpt2, ids)[1])
    assert torch.allclose(feature_activations(gpt2, sae, 0, ids), want, atol=1e-6)
    with pytest.raises(AcdcError, match="feature 10 is not in layer 0's 10 features"):
        feature_card(gpt2, sae, 0, 10, _corpus(), cache_dir=False)


def test_cross_layer_logit_effects_add_every_decoder(gpt2):
    from acdc_engine.features.dictionary import CrossLayerTranscoder

    torch.manual_seed(5)
    a = gpt2.adapter
    clt = CrossLayerTranscoder(a.n_layers, a.d_model, 8)
    ln_f, W_U = gpt2.hf.transformer.ln_f, gpt2.hf.lm_head.weight
    d = sum(clt.W_dec[0][3, j] for j in range(a.n_layers)).detach().double()  # layer 0 -> all
    want = W_U.double() @ (ln_f.weight.double() * (d - d.mean()))
    assert torch.allclose(logit_effects(gpt2, clt, 0, 3).double(), want, atol=1e-5)
    card = feature_card(gpt2, clt, 1, 2, _corpus(), cache_dir=False)
    assert card.kind == "clt" and 0 <= card.density <= 1


def test_summary_does_not_depend_on_batching(gpt2):
    from acdc_engine.features.cards import _summarize, corpus_ids

    tc = _transcoders(gpt2)
    ids, lengths = corpus_ids(_corpus(n=9, seed=3))
    one = _summarize(gpt2, tc, 1, ids, lengths, batch_size=16)
    many = _summarize(gpt2, tc, 1, ids, lengths, batch_size=2)
    assert torch.equal(one["count"], many["count"])
    assert torch.allclose(one["values"], many["values"], atol=1e-6)
    assert torch.allclose(one["total"], many["total"], atol=1e-5)
    top = one["values"][0] > 0  # the best place of each feature (ties aside) is the same
    same = (one["indices"][0] == many["indices"][0]) | (
        (one["values"][0] - many["values"][0]).abs() < 1e-6)
    assert bool(same[top].all())
