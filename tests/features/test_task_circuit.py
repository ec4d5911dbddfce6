"""Task-level sparse feature circuits: IG node scores with one step are plain attribution
patching (computed here independently, every layer at once), edges are the Jacobian products
they are defined as, the full circuit's faithfulness is 1 and the empty one's 0, the held-out
split is a partition, and a circuit survives circuit.json."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.errors import AcdcError
from acdc_engine.features.dictionary import Transcoder, TranscoderSet
from acdc_engine.features.feature_circuit import FeatureCircuit
from acdc_engine.features.splice import spliced_run
from acdc_engine.features.task_circuit import batch_runs, feature_circuit, score_nodes, select_nodes
from acdc_engine.features.task_eval import feature_curves, node_faithfulness, split_problem
from acdc_engine.patching import ReadOut
from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.tasks import prepare
from acdc_engine.testing import random_pairs
from acdc_engine.testing.dictionaries import random_transcoders


def _transcoders(model, n=16, seed=0):
    return random_transcoders(model, n, seed=seed, activation="relu", b_enc=-0.2)


@pytest.fixture(scope="module")
def setup(gpt2):
    data = prepare("t", gpt2.tokenizer, random_pairs(8, seed=3))
    problem = Problem.build(gpt2, data, registry().metric("logit_diff"), "corrupted",
                            batch_size=4)
    return problem, _transcoders(gpt2)


def test_one_step_is_attribution_patching(setup):
    problem, tc = setup
    s = score_nodes(problem, tc, steps=1)
    L = tc.n_layers
    feats = [torch.zeros(16, dtype=torch.float64) for _ in range(L)]
    errs = [torch.zeros((), dtype=torch.float64) for _ in range(L)]
    for b in problem.batches:
        runs = batch_runs(problem, tc, b)
        da = [torch.zeros_like(a).requires_grad_(True) for a in runs.clean_acts]
        de = [torch.zeros_like(e).requires_grad_(True) for e in runs.clean_err]
        out = spliced_run(problem.model.adapter, b.clean, tc,
                          errors=[e + d for e, d in zip(runs.clean_err, de)],
                          edit=lambda j, acts, da=da: acts + da[j], readout=ReadOut.of(b))
        g = torch.autograd.grad(problem.metric.score(out.logits, b).sum(), da + de)
        for j in range(L):
            feats[j] += (g[j] * (runs.src_acts[j] - runs.clean_acts[j])).sum((0, 1)).double()
            errs[j] += (g[L + j] * (runs.src_err[j] - runs.clean_err[j])).sum().double()
    for j in range(L):
        assert torch.allclose(s.features[j].double(), feats[j], atol=1e-5, rtol=1e-4)
        assert float(s.errors[j]) == pytest.approx(float(errs[j]), abs=1e-5, rel=1e-4)
    assert any(f.abs().sum() > 0 for f in s.features)


def test_edges_are_the_defined_jacobian_products(setup):
    problem, tc = setup
    s = score_nodes(problem, tc, steps=2)
    names, vals = s.names_scores()
    kept = select_nodes(s, nodes=12)
    c = feature_circuit(problem, tc, nodes=12, scores=s)
    assert c.nodes == kept and len(c.nodes) == 12
    ups = [n for n in kept if n.startswith("L0.f")]
    downs = [n for n in kept if n.startswith("L1.f")]
    assert ups and downs
    u, d = int(ups[0].split(".f")[1]), int(downs[0].split(".f")[1])
    want = 0.0
    for bi, b in enumerate(problem.batches):  # layer 0 replaced by a leaf: dd/du directly
        runs = batch_runs(problem, tc, b)
        a0 = runs.clean_acts[0].clone().requires_grad_(True)
        out = spliced_run(problem.model.adapter, b.clean, tc, errors=runs.clean_err,
                          edit=lambda j, acts, a0=a0: a0 if j == 0 else acts,
                          readout=ReadOut.of(b))
        target = (s.grads[bi][1][..., d] * out.acts[1][..., d]).sum()
        (g,) = torch.autograd.grad(target, [a0])
        want += float((g[..., u] * (runs.src_acts[0] - runs.clean_acts[0])[..., u]).sum())
    assert c.edges.get((ups[0], downs[0]), 0.0) == pytest.approx(want, rel=1e-4, abs=1e-6)
    # a last-layer node's only way to the metric is direct: its edge is its one-step score
    s1 = score_nodes(problem, tc, steps=1)
    c1 = feature_circuit(problem, tc, nodes=30, scores=s1)
    last = [n for n in c1.nodes if n.startswith("L1.")]
    n1, v1 = s1.names_scores()
    for n in last:
        assert c1.edges[(n, "metric")] == pytest.approx(float(v1[n1.index(n)]), rel=1e-4,
                                                        abs=1e-6)


def test_full_circuit_is_faithful_and_empty_is_not(setup):
    problem, tc = setup
    s = score_nodes(problem, tc, steps=1)
    names, _ = s.names_scores()
    full = node_faithfulness(problem, tc, names)
    assert full.full == pytest.approx(problem.evaluate([None])[0], abs=1e-5)
    assert full.normalized == pytest.approx(1.0, abs=1e-5)
    assert node_faithfulness(problem, tc, []).normalized == pytest.approx(0.0, abs=1e-5)
    curve, complete = feature_curves(problem, tc, s, budgets=(10, 50, 100))
    assert curve.normalized[-1] == pytest.approx(1.0, abs=1e-5)
    assert complete.normalized[-1] == pytest.approx(0.0, abs=1e-5)
    assert curve.unit == "nodes" and curve.n_edges_total == len(names)


def test_held_out_split_and_circuit_file(setup, tmp_path):
    problem, tc = setup
    train, held = split_problem(problem, 0.25)
    assert (train.n_examples, held.n_examples) == (6, 2)
    rows = sorted(r for p in (train, held) for b in p.batches for r in b.rows)
    assert rows == sorted(r for b in problem.batches for r in b.rows)
    c = feature_circuit(train, tc, nodes=6, steps=1)
    c.attrs["faithfulness_held_out"] = node_faithfulness(held, tc, c.nodes).normalized
    back = FeatureCircuit.load(c.save(tmp_path / "circuit.json"))
    assert back.nodes == pytest.approx(c.nodes) and set(back.edges) == set(c.edges)
    assert back.attrs["faithfulness_held_out"] == c.attrs["faithfulness_held_out"]
    G = back.nx
    assert G.graph["granularity"] == "features" and G.nodes["metric"]["kind"] == "metric"
    pytest.importorskip("matplotlib")
    from acdc_engine.features.feature_plot import draw_feature_circuit

    png = draw_feature_circuit(back, tmp_path / "circuit.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(AcdcError, match="between 0 and 1"):
        split_problem(problem, 1.5)
    with pytest.raises(AcdcError, match="exactly one of nodes or threshold"):
        select_nodes(score_nodes(problem, tc, steps=1), nodes=3, threshold=0.1)


@pytest.mark.slow
def test_recorded_run_reports_held_out_faithfulness(gpt2, tmp_path):
    import json

    import mlflow

    from acdc_engine.api.feature_circuits import feature_circuit_run
    from acdc_engine.features import save_dictionary
    from acdc_engine.records.store import resolve_uri

    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in random_pairs(12, seed=5)))
    tc_file = save_dictionary(_transcoders(gpt2), tmp_path / "tc.safetensors")
    r = feature_circuit_run(gpt2, str(path), str(tc_file), nodes=8, steps=2, held_out=0.25,
                            batch_size=4, out=tmp_path / "run", render=False,
                            experiment="features-test")
    assert r.held_out.normalized == r.circuit.attrs["faithfulness_held_out"]
    assert r.circuit.attrs["n_held_out"] == 3 and r.circuit.attrs["n_train"] == 9
    assert r.curve.normalized[-1] == pytest.approx(1.0, abs=1e-5)  # on the held-out pairs
    for f in ("circuit.json", "node_scores.tsv", "curve.tsv", "completeness.tsv", "run.json"):
        assert (tmp_path / "run" / f).is_file()
    assert FeatureCircuit.load(tmp_path / "run" / "circuit.json").nodes == \
        pytest.approx(r.circuit.nodes)
    mlflow.set_tracking_uri(resolve_uri())
    run = mlflow.get_run(r.run_id)
    assert run.data.metrics["faithfulness_held_out"] == pytest.approx(r.held_out.normalized)
    assert run.data.params["ig_steps"] == "2" and run.info.status == "FINISHED"
    with pytest.raises(AcdcError, match="exactly one of nodes or threshold"):
        feature_circuit_run(gpt2, str(path), str(tc_file), nodes=3, threshold=0.1,
                            track=False)


def test_cli_feature_circuit(gpt2_path, tmp_path, capsys):
    import json

    from acdc_engine import load_model
    from acdc_engine.cli import main
    from acdc_engine.features import save_dictionary

    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in random_pairs(8, seed=5)))
    tc = save_dictionary(_transcoders(load_model(str(gpt2_path), device="cpu")),
                         tmp_path / "tc.safetensors")
    rc = main(["features", "circuit", "--task", str(path), "--model", str(gpt2_path),
               "--transcoders", str(tc), "--nodes", "5", "--ig-steps", "1", "--held-out",
               "0.25", "--batch-size", "4", "--no-track",
               "--out", str(tmp_path / "run")])
    out = capsys.readouterr().out
    assert rc == 0 and "held out" in out and (tmp_path / "run" / "circuit.json").is_file()
    saved = json.loads((tmp_path / "run" / "run.json").read_text())
    assert "faithfulness_held_out" in saved and saved["params"]["held_out"] == 0.25
    # the run's one page, like a component run's report: its figures and pictures
    page = (tmp_path / "run" / "report.html").read_text()
    held = saved["faithfulness_held_out"]["normalized"]
    assert f"{held:.3f}" in page and page.count("data:image/png;base64") == 2


@pytest.mark.slow
def test_shipped_model_reaches_its_reported_held_out_faithfulness(tmp_path):
    """ioi-names on gpt2-ioi-bpe with its shipped transcoders: the circuit read back from
    circuit.json gives, on the held-out pairs, the faithfulness the run reported."""
    from acdc_engine.api.feature_circuits import feature_circuit_run
    from acdc_engine.api.setup import build_problem, load_model, load_task
    from acdc_engine.features import shipped_transcoders

    r = feature_circuit_run("gpt2-ioi-bpe", "ioi-names", nodes=100, steps=3, n_examples=32,
                            held_out=0.25, track=False, render=False, out=tmp_path / "run")
    assert r.held_out.normalized > 0.6
    lm = load_model("gpt2-ioi-bpe", device="cpu")
    problem, _ = build_problem(lm, load_task("ioi-names"), n_examples=32, batch_size=16)
    _, held = split_problem(problem, 0.25, seed=0)
    back = FeatureCircuit.load(tmp_path / "run" / "circuit.json")
    again = node_faithfulness(held, shipped_transcoders(lm), back.nodes)
    assert again.normalized == pytest.approx(r.held_out.normalized, abs=1e-4)
    assert back.attrs["faithfulness_held_out"] == pytest.approx(r.held_out.normalized)


def test_cross_layer_transcoder_circuit(setup):
    from acdc_engine.features.dictionary import CrossLayerTranscoder

    problem, _ = setup
    torch.manual_seed(4)
    a = problem.model.adapter
    clt = CrossLayerTranscoder(a.n_layers, a.d_model, 12)
    with torch.no_grad():
        clt.b_enc.fill_(-0.2)
    s = score_nodes(problem, clt, steps=2)
    names, _ = s.names_scores()
    assert len(names) == a.n_layers * 13
    assert node_faithfulness(problem, clt, names).normalized == pytest.approx(1.0, abs=1e-5)
    assert node_faithfulness(problem, clt, []).normalized == pytest.approx(0.0, abs=1e-5)
    c = feature_circuit(problem, clt, nodes=6, scores=s)
    assert c.number_of_nodes() == 6 and c.number_of_edges() > 0


def test_transcoders_for_another_model_are_refused(gpt2, tmp_path):
    import json

    from acdc_engine.api.feature_circuits import feature_circuit_run
    from acdc_engine.features import save_dictionary

    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in random_pairs(8, seed=5)))
    wide = TranscoderSet([Transcoder(24, 8, layer=i) for i in range(gpt2.adapter.n_layers)])
    f = save_dictionary(wide, tmp_path / "wide.safetensors")
    with pytest.raises(AcdcError) as e:
        feature_circuit_run(gpt2, str(path), str(f), nodes=3, track=False)
    msg = str(e.value)
    assert "\n" not in msg and "wide.safetensors" in msg and "24" in msg and "16" in msg
    deep = TranscoderSet([Transcoder(16, 8, layer=i) for i in range(3)])
    f = save_dictionary(deep, tmp_path / "deep.safetensors")
    with pytest.raises(AcdcError, match="deep.safetensors.* 3 layers; the model has 2"):
        feature_circuit_run(gpt2, str(path), str(f), nodes=3, track=False)


def test_per_position_nodes(setup):
    problem, tc = setup
    s = score_nodes(problem, tc, steps=2)
    p = score_nodes(problem, tc, steps=2, per_position=True)
    for j in range(tc.n_layers):  # the positions' scores add up to the node's
        assert torch.allclose(p.features[j].sum(0), s.features[j], atol=1e-5, rtol=1e-4)
        assert float(p.errors[j].sum()) == pytest.approx(float(s.errors[j]), abs=1e-5)
    names, _ = p.names_scores()
    assert len(names) == tc.n_layers * 6 * 17 and names[0] == "L0.f0@0"
    assert node_faithfulness(problem, tc, names, per_position=True).normalized == \
        pytest.approx(1.0, abs=1e-5)
    c = feature_circuit(problem, tc, nodes=8, scores=p, per_position=True)
    assert all("@" in n for n in c.nodes) and all("@" in u for u, _ in c.edges)
    f = node_faithfulness(problem, tc, c.nodes, per_position=True)
    assert f.empty == pytest.approx(node_faithfulness(problem, tc, []).empty, abs=1e-5)
