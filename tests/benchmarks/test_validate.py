"""benchmarks/validate.py: the page it writes has the method table's columns, a positive cost,
the ensembles and the "which is best" summary, and a row that says why a method was skipped."""

from __future__ import annotations

import re

import pytest
import torch


def _rows(text: str, header_start: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the first markdown table whose header starts ``header_start``."""
    lines = text.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith(header_start))
    head = [c.strip() for c in lines[i].strip("|").split("|")]
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return head, rows


@pytest.fixture(scope="module")
def validate(bench_dir):
    import validate

    return validate


def test_method_table_columns_and_cost(validate, tmp_path):
    out = tmp_path / "v.md"
    assert validate.main(["--examples", "4", "--methods", "eap", "--models", "tracr-reverse",
                          "--boot", "50", "--out", str(out)]) == 0
    text = out.read_text()
    head, rows = _rows(text, "| model / task | metric | ablation | method |")
    for col in ("family", "edge AUC", "node AUC", "CPR", "CMD", "faith. @ GT size, topk",
                "faith. @ GT size, ilp", "own circuit: edges (faith.)", "time (s)",
                "cost (fwd+bwd)"):
        assert col in head, col
    eap = [dict(zip(head, r)) for r in rows if r[head.index("method")] == "eap"]
    assert {r["metric"] for r in eap} == {"logit_diff", "l2"}
    assert {r["ablation"] for r in eap} == {"zero", "corrupted"}
    for r in eap:
        assert r["family"] == "attribution"
        assert float(r["cost (fwd+bwd)"]) > 0
        assert 0 <= float(r["edge AUC"]) <= 1
        assert r["faith. @ GT size, ilp"] != ""
    gt = [dict(zip(head, r)) for r in rows if r[head.index("method")] == "*(ground truth)*"]
    assert gt and all(r["own circuit: edges (faith.)"].startswith("10 (") for r in gt)
    assert "methods limited to eap" in text and "models limited to tracr-reverse" in text
    assert "(no IOI model in this run)" in text


def test_fwd_bwd_unit_is_positive(validate):
    from acdc_engine import load_model
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.tasks import prepare

    reg = registry()
    lm = load_model("tracr-frac-prevs", device="cpu")
    task = reg.task("tracr-frac-prevs")
    problem = Problem.build(lm, prepare(task, lm.tokenizer, task.rows(4, 0)), reg.metric("l2"),
                            "zero")
    flags = [p.requires_grad for p in lm.hf.parameters()]
    assert validate.fwd_bwd_seconds(problem, repeats=2) > 0
    assert [p.requires_grad for p in lm.hf.parameters()] == flags  # left as found


def test_ensemble_summary_and_skipped_method(validate, tmp_path, monkeypatch):
    """A method registered while the script runs is picked up; one that refuses the ablation
    is a row saying why; the eap+eap-ig ensemble and the summary come from the numbers."""
    from acdc_engine.plugins import registry
    from acdc_engine.scoring import Method, MethodOutput

    def refuses_zero(problem, settings, progress):
        if problem.ablation.kind == "zero":
            raise ValueError("this method needs corrupted prompts")
        return MethodOutput(torch.rand(problem.graph.n_edges))

    monkeypatch.setitem(registry().methods, "test-refuses-zero",
                        Method("test-refuses-zero", refuses_zero))
    monkeypatch.setitem(registry().methods, "test-bad-shape",
                        Method("test-bad-shape", lambda p, s, g: MethodOutput(torch.ones(3))))
    out = tmp_path / "v.md"
    assert validate.main(["--examples", "4", "--methods",
                          "eap,eap-ig,test-refuses-zero,test-bad-shape",
                          "--models", "tracr-frac-prevs", "--boot", "50",
                          "--out", str(out)]) == 0
    text = out.read_text()
    head, rows = _rows(text, "| model / task | metric | ablation | method |")
    by = {(r[head.index("ablation")], r[head.index("method")]): r for r in rows}
    skipped = by[("zero", "test-refuses-zero")]
    assert "skipped: ValueError: this method needs corrupted prompts" in " ".join(skipped)
    assert float(by[("corrupted", "test-refuses-zero")][head.index("cost (fwd+bwd)")]) > 0
    assert "skipped: evaluation failed: " in " ".join(by[("zero", "test-bad-shape")])
    ens = by[("zero", "mean(eap, eap-ig)")]
    assert ens[head.index("family")] == "ensemble"
    # the ensemble's cost is its members' together
    cost = lambda m: float(by[("zero", m)][head.index("cost (fwd+bwd)")])  # noqa: E731
    assert cost("mean(eap, eap-ig)") == pytest.approx(cost("eap") + cost("eap-ig"), rel=0.02)
    # three attribution methods ran under corrupted ablation: the all-attribution ensemble too
    assert ("corrupted", "mean(attribution)") in by
    assert ("zero", "mean(attribution)") not in by  # the same two members as mean(eap, eap-ig)
    summary = text.split("### Which is best")[1].split("## Table")[0]
    assert re.search(r"\*\*tracr-frac-prevs\*\*, l2, zero: best single attribution method "
                     r"\S+ CMD \*\*[0-9.]+\*\*", summary)
    assert "**Verdict**" in summary


def test_intervals_agree_with_the_library(validate):
    """The page's CPR/CMD and their intervals are those of
    ``acdc_engine.evidence.uncertainty.curve_intervals`` on the same scores; a method against
    itself differs by exactly 0."""
    from acdc_engine import load_model
    from acdc_engine.evidence.uncertainty import curve_intervals
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.tasks import prepare

    case = validate.Case("tracr-frac-prevs", "tracr-frac-prevs", "l2")
    rows = validate.run_case(case, "corrupted", 8, 0, ["eap-ig"], n_boot=200)
    (row,) = [r for r in rows if r["method"] == "eap-ig"]
    reg = registry()
    lm = load_model("tracr-frac-prevs", device="cpu")
    task = reg.task("tracr-frac-prevs")
    problem = Problem.build(lm, prepare(task, lm.tokenizer, task.rows(8, 0)), reg.metric("l2"),
                            "corrupted", batch_size=64)
    lib = curve_intervals(problem, row["scores"], n_boot=200)
    for ours, theirs in ((row["cpr_ci"], lib.cpr), (row["cmd_ci"], lib.cmd)):
        assert ours.point == pytest.approx(theirs.point, abs=1e-9)
        assert ours.low == pytest.approx(theirs.low, abs=1e-9)
        assert ours.high == pytest.approx(theirs.high, abs=1e-9)
    assert row["cpr"] == pytest.approx(lib.cpr.point, abs=1e-9)
    assert row["cmd"] == pytest.approx(lib.cmd.point, abs=1e-9)
    same = validate.cmd_difference(row["curve"], row["curve"], row["ends"], 100)
    assert same.point == 0 and same.low == 0 and same.high == 0
