"""Attribution graphs (:func:`acdc_engine.features.trace`): exact identities on every built-in
family, a planted feature that the graph finds and whose ablation flips the answer as the graph
predicts, the feature-node cap, pruning and the JSON export, and refusals.
"""

from __future__ import annotations

import json

import pytest
import torch
from test_splice import build_family, family, ids_for, random_transcoders  # noqa: F401

from acdc_engine.errors import AcdcError
from acdc_engine.features import Transcoder, TranscoderSet
from acdc_engine.features.attribution_graph import AttributionGraph, trace
from acdc_engine.features.splice import spliced_run
from acdc_engine.testing.builders import save_gpt2
from acdc_engine.testing.numerics import EPS32, float64


def target_rows(g: AttributionGraph) -> torch.Tensor:
    """The rows with a target: feature nodes and logit nodes."""
    m = len(g.logit_ids)
    return torch.cat([torch.arange(g.n_features), torch.arange(g.n_nodes - m, g.n_nodes)])


def test_node_input_is_its_edges_plus_bias(family):  # noqa: F811
    """Every feature's pre-activation and every logit (minus the mean logit) is the sum of
    its incoming edges plus its bias term (measured by a separate run frozen in value, with
    the nodes removed), to a bound from the same graph in float64: 4x the float32 terms'
    error against float64 + 16 eps x the sum of the terms' magnitudes."""
    tc = random_transcoders(family, cross=family.family == "gpt2")
    ids = ids_for(family, batch=1, length=6)[0]
    g32 = trace(family, ids, tc, batch_size=16)
    with float64(family):
        g64 = trace(family, ids, tc.double(), batch_size=16)
    tc.float()
    assert torch.equal(g32.active_features, g64.active_features)
    assert g32.n_features > 0
    rows = target_rows(g32)
    A32, A64 = g32.adjacency_matrix[rows].double(), g64.adjacency_matrix[rows]
    b32, b64 = g32.node_bias[rows].double(), g64.node_bias[rows]
    x32, x64 = g32.node_inputs[rows].double(), g64.node_inputs[rows]
    resid = (x32 - A32.sum(1) - b32).abs()
    resid64 = (x64 - A64.sum(1) - b64).abs()
    # exact in float64, except where the model itself rounds to float32 in a float64 run
    # (transformers' RMS norms compute in float32 whatever their input): allowed on top
    err = (A32 - A64).abs().sum(1) + (b32 - b64).abs() + (x32 - x64).abs()
    size = A64.abs().sum(1) + b64.abs() + x64.abs()
    rms = any("RMSNorm" in type(m).__name__ for m in family.hf.modules())
    assert bool((resid64 <= (1e-5 if rms else 1e-12) * size).all())
    bound = 4 * err + 16 * EPS32 * size + resid64
    assert bool((resid <= bound).all()), f"{family.family}: {resid.max():.3g} > bound"
    assert float(A64.abs().sum()) > 0


def test_logit_targets_and_order(gpt2_graph_model):
    """Targets: the top logits to cumulative probability 0.95, at most 10; position 0 has no
    feature nodes; the adjacency is square over features, errors, tokens and logits."""
    model = gpt2_graph_model
    tc = random_transcoders(model)
    ids = ids_for(model, batch=1, length=5)[0]
    g = trace(model, ids, tc)
    assert g.n_pos in (len(ids), len(ids) + 1)  # a special token prepended where there is one
    with torch.no_grad():
        logits = spliced_run(model, g.input_tokens[None], tc).logits[0, -1]
    probs = logits.softmax(-1)
    top = probs.topk(10)
    assert g.logit_ids.tolist() == top.indices[:len(g.logit_ids)].tolist()
    k = len(g.logit_ids)
    assert k == 10 or float(top.values[:k].sum()) >= 0.95 > float(top.values[:k - 1].sum())
    assert bool((g.active_features[:, 1] > 0).all())
    assert g.n_nodes == g.n_features + (g.n_layers + 1) * g.n_pos + k


def test_feature_cap_keeps_the_same_rows(gpt2_graph_model):
    """A cap on feature nodes keeps a subset of the features, with the same edges among the
    nodes kept (the rows do not depend on which others were visited)."""
    model = gpt2_graph_model
    tc = random_transcoders(model, n=32, k=4)
    ids = ids_for(model, batch=1, length=6)[0]
    full = trace(model, ids, tc, batch_size=8)
    cap = trace(model, ids, tc, batch_size=4, max_feature_nodes=5)
    assert cap.n_features == 5 and full.n_features > 5
    keep = cap.selected_features
    cols = torch.cat([keep, torch.arange(full.n_features, full.n_nodes)])
    torch.testing.assert_close(cap.adjacency_matrix[:5], full.adjacency_matrix[keep][:, cols],
                               rtol=1e-5, atol=1e-6)
    # one forward row with batched output gradients gives the same graph
    vm = trace(model, ids, tc, batch_size=8, vmap=True)
    torch.testing.assert_close(vm.adjacency_matrix, full.adjacency_matrix, rtol=1e-5, atol=1e-6)
    repl, compl = full.scores()
    assert 0.0 <= repl <= 1.0 and 0.0 <= compl <= 1.0


@pytest.fixture(scope="module")
def gpt2_graph_model(tmp_path_factory):
    """The tiny GPT-2 of the family list."""
    return build_family("gpt2", tmp_path_factory.mktemp("gpt2-graph"))


def planted(root):
    """A one-layer GPT-2 with a ReLU MLP that a transcoder reproduces exactly; its feature 0
    fires on token ``A`` only and writes the unembedding of ``X``: (model, transcoders, A, X)."""
    from acdc_engine import load_model

    path = save_gpt2(root, n_layer=1, n_head=2, n_embd=16, activation_function="relu",
                     n_inner=8, tie_word_embeddings=False)
    model = load_model(str(path), device="cpu")
    hf, A, X = model.hf, 5, 9
    torch.manual_seed(3)
    with torch.no_grad():
        blk = hf.transformer.h[0]
        for p in blk.attn.parameters():
            p.zero_()
        hf.transformer.wpe.weight.zero_()
        blk.ln_2.weight.fill_(1.0)
        blk.ln_2.bias.zero_()
        u = blk.ln_2(hf.transformer.wte.weight)  # [V, d]: each token's MLP input
        u = u / u.norm(dim=-1, keepdim=True)
        w_in = torch.randn(16, 8) * 0.3
        w_in[:, 0] = 4 * u[A]
        cos = u @ u[A]
        b_in = torch.zeros(8)
        b_in[0] = -4 * float(cos.sort(descending=True).values[1] + 0.05)  # only A fires
        blk.mlp.c_fc.weight.copy_(w_in)
        blk.mlp.c_fc.bias.copy_(b_in)
        w_out = torch.randn(8, 16) * 0.05
        unemb = hf.lm_head.weight  # [V, d]
        w_out[0] = 40 * (unemb[X] - unemb.mean(0))
        blk.mlp.c_proj.weight.copy_(w_out)
        blk.mlp.c_proj.bias.zero_()
    tc = Transcoder(16, 8, layer=0, activation="relu")
    with torch.no_grad():
        tc.W_enc.copy_(w_in)
        tc.b_enc.copy_(b_in)
        tc.W_dec.copy_(w_out)
        tc.b_dec.zero_()
    return model, TranscoderSet([tc]), A, X


def test_planted_feature_drives_the_answer(tmp_path):
    model, tc, A, X = planted(tmp_path)
    g = trace(model, torch.tensor([3, 4, 6, A]), tc)
    ids, last = g.input_tokens, g.n_pos - 1
    with torch.no_grad():
        base = spliced_run(model, ids[None], tc)
    assert int(base.logits[0, -1].argmax()) == X
    assert float(torch.stack(base.errors).abs().max()) < 1e-4  # the MLP is the transcoder
    assert int(g.logit_ids[0]) == X
    # the graph finds it: feature (layer 0, last position, 0) is a kept node, the most
    # influential feature
    nodes = [g.node(i) for i in range(g.n_features)]
    i = nodes.index(("feature", 0, last, 0))
    pruned = g.prune()
    assert bool(pruned.node_mask[i])
    assert int(pruned.cumulative_scores[:g.n_features].argmin()) == i
    # its ablation: the graph predicts the target logit X falls below another target's
    m = len(g.logit_ids)
    pred = g.node_inputs[-m:] - g.adjacency_matrix[-m:, i]
    assert int(pred.argmax()) != 0

    def ablate(layer, acts):
        acts = acts.clone()
        acts[:, last, 0] = 0
        return acts

    with torch.no_grad():
        after = spliced_run(model, ids[None], tc, errors=base.errors, edit=ablate)
        # in the replacement model frozen in value (this run's norm scales), the ablation's
        # effect on every target is exactly the graph's prediction (one layer: direct only)
        frozen = spliced_run(model, ids[None], tc, freeze=True)
        linear = spliced_run(model, ids[None], tc, errors=base.errors, edit=ablate,
                             freeze=frozen.freezer.replay()).logits[0, -1]
    assert int(after.logits[0, -1].argmax()) != X
    got = (linear - linear.mean())[g.logit_ids]
    torch.testing.assert_close(got, pred, rtol=1e-4, atol=1e-4)


def test_export_and_save(gpt2_graph_model, tmp_path):
    model = gpt2_graph_model
    tc = random_transcoders(model)
    g = trace(model, ids_for(model, batch=1, length=5)[0], tc)
    path = g.to_circuit_tracer_json(tmp_path, "tiny")
    data = json.loads(path.read_text())
    assert set(data) == {"metadata", "qParams", "nodes", "links"}
    ids = {n["node_id"] for n in data["nodes"]}
    assert all(link["source"] in ids and link["target"] in ids for link in data["links"])
    kinds = {n["feature_type"] for n in data["nodes"]}
    assert {"embedding", "logit"} <= kinds
    assert sum(n["is_target_logit"] for n in data["nodes"]) == 1
    meta = json.loads((tmp_path / "graph-metadata.json").read_text())
    assert [m["slug"] for m in meta["graphs"]] == ["tiny"]
    nxg = g.to_networkx()
    assert nxg.number_of_edges() == len(data["links"])
    g.save(tmp_path / "g.pt")
    back = AttributionGraph.load(tmp_path / "g.pt")
    assert torch.equal(back.adjacency_matrix, g.adjacency_matrix)


def test_bad_inputs_refused(gpt2_graph_model):
    model = gpt2_graph_model
    a = model.adapter
    ids = ids_for(model, batch=1, length=5)[0]
    other = TranscoderSet([Transcoder(a.d_model, 8, layer=i, model="someone/else")
                           for i in range(2)])
    with pytest.raises(AcdcError, match="trained on 'someone/else'"):
        trace(model, ids, other)
    with pytest.raises(AcdcError, match="d_model is 16"):
        trace(model, ids, TranscoderSet([Transcoder(8, 8, layer=i) for i in range(2)]))
    with pytest.raises(AcdcError, match="cover 1 layers"):
        trace(model, ids, TranscoderSet([Transcoder(a.d_model, 8, layer=0)]))
    with pytest.raises(AcdcError, match="context is 32"):
        trace(model, torch.ones(40, dtype=torch.long), random_transcoders(model))


def test_cli_trace(gpt2_graph_model, tmp_path, capsys):
    """``acdc trace`` on a model folder and a dictionary file: the report and the files."""
    from acdc_engine.cli import main
    from acdc_engine.features import save_dictionary

    tc = random_transcoders(gpt2_graph_model)
    path = save_dictionary(tc, tmp_path / "tc.safetensors")
    out = tmp_path / "out"
    code = main(["trace", "--model", gpt2_graph_model.id, "--transcoders", str(path),
                 "--prompt", "w1 w2 w3 w4", "--out", str(out), "--json", "--cards", "1",
                 "--check", "2"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert 0.0 <= report["replacement_score"] <= 1.0
    assert report["pruned_nodes"] <= report["nodes"]
    # --cards 1: the most influential of the top features, with its card
    best = max((f for fs in report["top_features"].values() for f in fs),
               key=lambda f: f["influence"])
    [card] = report["cards"]
    assert (card["layer"], card["feature"]) == (best["layer"], best["feature"])
    # --check 2: two features ablated, the graph's prediction beside the actual change
    rows = report["check"]["rows"]
    assert len(rows) == 2 and all(r["ratio"] == r["actual"] / r["predicted"] for r in rows)
    assert {"graph.pt", "graph.json", "graph-metadata.json", "summary.json"} <= \
        {p.name for p in out.iterdir()}
    g = AttributionGraph.load(out / "graph.pt")
    assert g.n_nodes == report["nodes"]
    meta = json.loads((out / "graph.json").read_text())["metadata"]
    # acdc view --graph reopens the graph's model and transcoders from its metadata
    assert meta["model"] == str(gpt2_graph_model.id)
    assert meta["transcoders"] == str(path.resolve())
