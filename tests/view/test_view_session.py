"""The Session: interventions as undoable steps, the summary's numbers, the console verbs."""

from __future__ import annotations

import torch

from acdc_engine.interventions import Intervention, InterventionStack, evaluate_interventions


def test_summary_matches_the_interventions_module(view_session):
    s = view_session
    base = evaluate_interventions(s.problem, InterventionStack(s.graph))
    assert abs(s.summary.metric - float(base.mean())) < 1e-6
    out = s.ablate("a1.0", "corrupted")
    stack = InterventionStack(s.graph)
    stack.push(Intervention.parse("ablate a1.0 corrupted"))
    ref = evaluate_interventions(s.problem, stack)
    assert abs(out.metric - float(ref.mean())) < 1e-6
    assert abs(out.delta - float(ref.mean() - base.mean())) < 1e-6
    # per_example is by row number; the reference is in batch order
    rows = [r for b in s.problem.batches for r in b.rows]
    by_row = dict(zip(rows, ref.tolist()))
    assert all(abs(v - by_row[i]) < 1e-5 for i, v in enumerate(out.per_example))
    assert 0 <= out.prob <= 1 and 0 <= out.accuracy <= 1


def test_steps_undo_restore_reset(view_session):
    s = view_session
    clean = s.summary.metric
    s.intervene("patch a0.* from corrupted")  # one step, two heads
    assert s.interventions == ["patch a0.0 corrupted", "patch a0.1 corrupted"]
    s.freeze("m1")
    assert s.steps == ["patch a0.* from corrupted", "freeze m1"]
    s.undo()
    assert s.steps == ["patch a0.* from corrupted"]
    s.restore("a0.1")
    assert s.interventions == ["patch a0.0 corrupted"]
    s.reset()
    assert s.interventions == [] and abs(s.summary.metric - clean) < 1e-6
    assert s.summary.flipped == []


def test_flips_are_examples_whose_prediction_changed(view_session):
    s = view_session
    s.ablate("*", "zero")  # every writer zeroed: the logits no longer see the prompt
    out = s.summary
    rows = [r for b in s.problem.batches for r in b.rows]
    _, logits = s.per_example(InterventionStack(s.graph))
    ans, wrong = s.answer_ids, s.wrong_ids
    n = torch.arange(len(rows))
    clean_correct = (logits[n, ans] - logits[n, wrong]) > 0
    _, now = s.per_example()
    now_correct = (now[n, ans] - now[n, wrong]) > 0
    expect = sorted(r for r, a, b in zip(rows, clean_correct, now_correct) if a != b)
    assert out.flipped == expect == out.flipped_step


def test_bad_input_keeps_the_state(view_session):
    s = view_session
    s.ablate("a1.1")
    before = (list(s.interventions), s.version, s.summary.metric)
    for line in ("ablate a7.0", "ablate zz", "freeze logits", "patch a9.* from corrupted",
                 "ablate a1.0 sideways", "frobnicate m1", "lens 999", "heads m0 qk",
                 "show circuit no-such-run", "edges 5"):
        out = s.command(line)
        assert out["ok"] is False and out["message"], line
        assert "Traceback" not in out["message"]
    assert (list(s.interventions), s.version, s.summary.metric) == before
    assert "a7.0" in s.command("ablate a7.0")["message"]


def test_console_verbs(view_session, tmp_path):
    s = view_session
    assert s.command("ablate a1.1 mean")["ok"]
    assert s.command("undo")["ok"] and s.interventions == []
    lens = s.command("lens 2 -1")["view"]
    assert len(lens["logit_diff"]) == s.graph.n_layers + 1 and lens["position"] == 5
    qk = s.command("heads a1.* qk 1")["view"]
    assert [h["name"] for h in qk["heads"]] == ["a1.0", "a1.1"]
    pat = torch.tensor(qk["heads"][0]["pattern"])  # [q, k], causal, rows sum to 1
    assert torch.allclose(pat.sum(-1), torch.ones(len(pat)), atol=1e-4)
    assert float(pat.triu(1).abs().max()) < 1e-6
    ov = s.command("heads a1.0 ov")["view"]
    assert abs(ov["diff_effect"] - (ov["answer_effect"] - ov["wrong_effect"])) < 1e-6
    s.allow(tmp_path)  # the console writes only where it is allowed to (test_view_paths.py)
    assert s.command(f"save circuit {tmp_path / 'c.json'}")["ok"]
    assert "help" in s.command("help")["message"]


def test_ov_is_the_direct_path_ablation(view_session):
    """The head's answer-logit effect equals clean minus (edge head->logits zeroed)."""
    s = view_session
    ov = s.inspect.ov("a1.1")
    stack = InterventionStack(s.graph)
    stack.push(Intervention.parse("ablate a1.1->logits zero"))
    _, base = s.per_example()
    _, cut = s.per_example(stack)
    n = torch.arange(len(base))
    expect = float((base[n, s.answer_ids] - cut[n, s.answer_ids]).mean())
    assert abs(ov["answer_effect"] - expect) < 1e-5


def test_circuit_discover_size_and_load(view_session, tmp_path):
    s = view_session
    info = s.circuit.discover("eap", 10)
    assert info["has_scores"] and 0 < info["n_edges"] <= 10
    f = info["faithfulness"]
    assert abs(f["normalized"] - (f["circuit"] - f["empty"]) / (f["full"] - f["empty"])) < 1e-9
    full = s.circuit.size(s.graph.n_edges)
    assert abs(full["faithfulness"]["normalized"] - 1) < 1e-4
    path = s.circuit.current.save(tmp_path / "circuit.json")
    s.circuit.load(str(path))
    assert s.circuit.info()["n_edges"] == s.graph.n_edges
    assert len(s.circuit.edges()) == min(s.graph.n_edges, 1500)


def test_notebook_html(view_session):
    s = view_session
    s.ablate("a0.1")
    html = s._repr_html_()
    assert "ablate a0.1" in html and "<svg" in html and s.problem.metric.name in html


def test_lens_of_a_free_prompt_uses_the_models_top_two(view_session):
    from acdc_engine.testing import WORDS

    s = view_session
    text = " ".join(WORDS[:5])
    view = s.inspect.lens(0, -1, text)
    assert view["tokens"] == WORDS[:5] and view["answer_rank"][-1] == 0
    assert view["logit_diff"][-1] >= 0  # top-1 minus top-2 of the full model


def test_a_failed_evaluation_puts_the_stack_back(view_session, monkeypatch):
    import pytest

    s = view_session
    s.ablate("a0.0")
    before = (list(s.interventions), list(s.steps), s.version)

    def boom(previous):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(s, "_evaluate", boom)
    for call in (lambda: s.ablate("a1.1"), s.undo, s.reset, lambda: s.restore("a0.0")):
        with pytest.raises(RuntimeError):
            call()
        assert (list(s.interventions), list(s.steps), s.version) == before
        assert s.activity is None


def test_circuit_from_a_run_directory(view_session, tmp_path):
    import json

    from acdc_engine.records import write_scores

    s = view_session
    scores = torch.linspace(-1, 1, s.graph.n_edges)  # strongest at both ends
    run = tmp_path / "toy" / "run1"
    run.mkdir(parents=True)
    write_scores(run / "edge_scores.tsv", s.graph, scores)
    (run / "run.json").write_text(json.dumps({"run_id": "run1", "metrics": {"edges": 6}}))
    info = s.circuit.load(str(run))
    assert info["source"] == f"run {run}" and info["has_scores"]
    drawn = {e["name"]: e["score"] for e in s.circuit.edges()}
    assert len(drawn) == info["n_edges"] <= 6  # the run's own size, dead ends pruned
    assert all(abs(v) > 0.9 for v in drawn.values())
    assert s.circuit.size(20)["n_edges"] <= 20


def test_undo_reuses_the_evaluation_and_notify_recomputes(view_session, monkeypatch):
    import acdc_engine.view.state as mod  # where the session evaluates

    s = view_session
    calls = []
    real = mod.evaluate_interventions
    monkeypatch.setattr(mod, "evaluate_interventions",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    clean = s.summary.metric
    s.ablate("a0.1")
    assert len(calls) == 1
    assert s.undo().metric == clean and len(calls) == 1  # remembered: no model run
    v = s.version
    s.notify("a hook was added")
    assert len(calls) == 2 and s.version == v + 1 and s.log[-1] == "a hook was added"
