"""Validate every discovery method against the ground-truth circuits; writes docs/validation.md.

    python benchmarks/validate.py                  # the full page (a few minutes on 2 CPU cores)
    python benchmarks/validate.py --examples 16 --out /tmp/validation.md   # a quick look
    python benchmarks/validate.py --methods eap,eap-ig --models tracr-reverse --out /tmp/v.md

For every registered method (``acdc_engine.plugins.registry().methods``, read when the script
runs: eap, eap-ig, acdc, edge-pruning, ...) plus exact single-edge patching
(:func:`acdc_engine.scoring.exact_scores`) and two ensembles of the attribution methods
(:func:`acdc_engine.evaluation.selection.ensemble_scores`), on every model that ships a ground
truth (``tracr-reverse``, ``tracr-frac-prevs``, ``toy-induction``), under zero and under
corrupted ablation, it measures:

* edge and node ROC AUC of the scores against the ground truth
  (:mod:`acdc_engine.evaluation.groundtruth`);
* CPR and CMD of the faithfulness curve at MIB's budgets (:mod:`acdc_engine.evaluation.curves`);
* the normalized faithfulness of the circuit of the ground truth's edge count n chosen by two
  selections: top-n (then dead ends pruned) and the integer program
  (:func:`~acdc_engine.evaluation.selection.ilp_select`, budget n); and the faithfulness of
  the circuit a method chooses itself (ACDC, mask optimization);
* the scoring time, and its cost in units of one plain forward+backward of the model on the
  same examples, measured in the same process (:func:`fwd_bwd_seconds`).

On the toy IOI models (``tiny-ioi`` / ``ioi``, ``gpt2-ioi-bpe`` / ``ioi-names``; no ground
truth) it gives CPR and CMD per method with 95 % bootstrap intervals over the examples (the
examples resampled, the curve recomputed from the same scores: the scores are not recomputed).
A summary compares, per setting, the best single attribution method's CMD with the best
mask-optimization method's or ensemble's (a paired bootstrap interval on the difference).

A method that cannot run in a setting (it refuses the ablation or the metric) is a row that
says why. The ground-truth circuit's own faithfulness is given as a reference for each
setting. The prose of the page lives in this script (``PROSE_HEAD``, ``PROSE_TAIL``), so one
command regenerates all of it.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    model: str
    task: str
    metric: str
    ablations: tuple[str, ...] = ("zero", "corrupted")
    ground_truth: bool = True


CASES = (
    Case("tracr-reverse", "tracr-reverse", "logit_diff"),
    Case("tracr-reverse", "tracr-reverse", "l2"),
    Case("tracr-frac-prevs", "tracr-frac-prevs", "l2"),
    Case("toy-induction", "induction", "logit_diff"),
    Case("tiny-ioi", "ioi", "logit_diff", ("corrupted",), False),
    Case("gpt2-ioi-bpe", "ioi-names", "logit_diff", ("corrupted",), False),
)
ABLATIONS = ("zero", "corrupted")
RECOMMENDED = "zero"  # for recovering a ground-truth circuit; see PROSE
#: Method settings used here (only keys a method has are passed).
SETTINGS = {"ig_steps": 5, "prune_metric": "task"}
#: Optimizer steps of the mask-optimization methods (``--steps``; their own default is 300).
MASK_STEPS = 300
#: The ensembles: name -> members (None: every attribution method that ran in the setting);
#: each member's |scores| divided by its largest, then the mean per edge.
ENSEMBLES = {"mean(eap, eap-ig)": ("eap", "eap-ig"), "mean(attribution)": None}
N_BOOT = 1000
LEVEL = 0.95
TIE = 1e-3  # CMD differences below this are ties

#: Published reference points (Conmy et al. 2023, ACDC), edge ROC AUC.
PAPER = [("ACDC", "tracr-reverse", "zero", "1.00"), ("ACDC", "tracr-proportion", "zero", "1.00"),
         ("ACDC", "tracr-reverse", "corrupted, task metric", "0.20"),
         ("ACDC", "tracr-proportion", "corrupted, task metric", "0.68")]


def _methods(only: list[str] | None = None) -> list[str]:
    """Every registered method (in registry order) and ``exact``; ``only`` keeps those named."""
    from acdc_engine.plugins import registry

    names = [*registry().methods, "exact"]
    return names if only is None else [m for m in names if m in only]


def family(method: str) -> str:
    """``attribution`` (scores only), ``mask optimization`` (learns a mask: a method that
    chooses its circuit and has a ``steps`` setting), ``patching`` (ACDC-like: chooses its
    circuit by patching), ``exact``, ``ensemble``."""
    from acdc_engine.plugins import registry

    if method == "exact":
        return "exact"
    if method in ENSEMBLES:
        return "ensemble"
    m = registry().method(method)
    if not m.selects_circuit:
        return "attribution"
    return "mask optimization" if "steps" in m.defaults else "patching"


def _settings(method: str, steps: int) -> dict:
    from acdc_engine.plugins import registry

    m = registry().method(method)
    given = {**SETTINGS, "steps": steps}
    return {k: v for k, v in given.items() if k in m.defaults}


def score(problem, method: str, steps: int = MASK_STEPS):
    """(output, seconds, error) for one method: ``output`` is the method's
    :class:`~acdc_engine.scoring.MethodOutput` (scores on the CPU, float32)."""
    from acdc_engine.plugins import registry
    from acdc_engine.scoring import MethodOutput, exact_scores

    t0 = time.perf_counter()
    try:
        if method == "exact":
            out = MethodOutput(exact_scores(problem, progress=False))
        else:
            m = registry().method(method)
            out = m.run(problem, m.configure(_settings(method, steps)), False)
    except Exception as e:  # a method that cannot run here is a row that says why
        return None, time.perf_counter() - t0, f"{type(e).__name__}: {str(e).splitlines()[0]}"
    seconds = time.perf_counter() - t0
    out.scores = out.scores.detach().float().cpu()
    return out, seconds, None


def _embedding_module(hf):
    """The module whose output is the token embeddings (Hugging Face's
    ``get_input_embeddings``, else the first module named like ``embed``)."""
    get = getattr(hf, "get_input_embeddings", None)
    mod = get() if callable(get) else None
    if mod is None:
        mod = next((m for n, m in hf.named_modules() if n and "embed" in n.split(".")[-1]),
                   None)
    return mod


def fwd_bwd_seconds(problem, repeats: int = 7) -> float:
    """Median wall-clock seconds of one plain forward+backward of the model over every batch
    of ``problem`` (the same examples the methods score): the model's own forward on the clean
    prompts, the task's metric at the last position, the backward to the token embeddings
    (weights frozen, as attribution needs no weight gradients). One warm-up first."""
    hf = problem.model.hf
    emb = _embedding_module(hf)
    flags = [(p, p.requires_grad) for p in hf.parameters()]

    def once():
        for batch in problem.batches:
            hook = None if emb is None else emb.register_forward_hook(
                lambda m, i, o: o.detach().requires_grad_(True))
            try:
                with torch.enable_grad():
                    out = hf(batch.clean)
                    logits = (out.logits if hasattr(out, "logits") else out)[:, -1:]
                    try:
                        loss = problem.metric.score(logits, batch).sum()
                    except Exception:  # a metric that reads other positions: any scalar does
                        loss = logits.float().logsumexp(-1).sum()
                    if loss.requires_grad:
                        loss.backward()
            finally:
                if hook is not None:
                    hook.remove()

    try:
        for p, _ in flags:
            p.requires_grad_(False)
        once()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            once()
            times.append(time.perf_counter() - t0)
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return statistics.median(times)


# ----- curves from per-example values (points as curves.py, intervals as uncertainty.py) -------
def _normalized(v: torch.Tensor) -> torch.Tensor:
    """rows (circuit..., full, empty) ``[k, B, n]`` -> normalized faithfulness ``[k - 2, B]``."""
    m = v.mean(-1)
    return (m[:-2] - m[-1]) / (m[-2] - m[-1])


def _areas(x: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """CPR and CMD (trapezoids over x, sorted) of normalized faithfulness ``f [nb, B]``."""
    order = torch.argsort(x, stable=True)
    xs, fs = x[order], f[order]
    dx = (xs[1:] - xs[:-1])[:, None]
    cpr = (dx * (fs[1:] + fs[:-1]) / 2).sum(0)
    d = (1 - fs).abs()
    return cpr, (dx * (d[1:] + d[:-1]) / 2).sum(0)


@dataclass
class CurveValues:
    """A method's budget circuits evaluated per example: ``values [n_budgets, n_examples]``
    (the metric of each budget's top-n circuit, pruned), ``x`` the fraction of edges each
    keeps."""

    x: torch.Tensor
    values: torch.Tensor


def cmd_difference(a: CurveValues, b: CurveValues, ends: torch.Tensor, n_boot: int = N_BOOT,
                   level: float = LEVEL, seed: int = 0):
    """CMD of ``b`` minus CMD of ``a`` with its paired bootstrap interval (both curves, the
    full model and the empty circuit resampled on the same examples)."""
    from acdc_engine.evidence.uncertainty import bootstrap

    na = len(a.x)
    vals = torch.cat([a.values, b.values, ends])

    def stat(v):
        fa = _normalized(torch.cat([v[:na], v[-2:]]))
        fb = _normalized(v[na:])
        return _areas(b.x, fb)[1] - _areas(a.x, fa)[1]

    return bootstrap(vals, stat, n_boot, level, seed)


def run_case(case: Case, ablation: str, n_examples: int, seed: int, methods: list[str],
             steps: int = MASK_STEPS, n_boot: int = N_BOOT) -> list[dict]:
    """Every method (and ensemble) on one setting: one row each (plus the ground truth's)."""
    from acdc_engine import load_model
    from acdc_engine.circuit import prune_dead, select
    from acdc_engine.evaluation.curves import BUDGETS, budget_circuits, curve_from_values
    from acdc_engine.evaluation.groundtruth import evaluate_ground_truth, ground_truth_for
    from acdc_engine.evaluation.selection import ensemble_scores, ilp_select
    from acdc_engine.evidence.uncertainty import bootstrap, per_example
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.tasks import prepare

    reg = registry()
    torch.manual_seed(seed)
    lm = load_model(case.model, device="cpu")
    task = reg.task(case.task)
    metric = reg.metric(case.metric)
    data = prepare(task, lm.tokenizer, task.rows(n_examples, seed))
    problem = Problem.build(lm, data, metric, ablation, batch_size=64)
    g = lm.graph
    gt = ground_truth_for(lm) if case.ground_truth else None
    ends = per_example(problem, [None, problem.empty_mask()]).double()  # full, empty
    full, empty = (float(v) for v in ends.mean(-1))
    unit = fwd_bwd_seconds(problem)
    base = {"model": case.model, "task": case.task, "metric": case.metric,
            "ablation": ablation, "n_edges": g.n_edges, "n_gt": len(gt.edges) if gt else None,
            "n_examples": len(data), "fwd_bwd": unit, "ends": ends, "error": None}
    rows = []
    if gt is not None:
        (gt_value,) = per_example(problem, [g.mask_from_edges(list(gt.edges))]).double().mean(-1)
        rows.append({**base, "method": "(ground truth)", "family": "",
                     "own_edges": len(gt.edges),
                     "own_faith": _norm(float(gt_value), full, empty)})

    def measure(name: str, scores, keep, seconds: float, info: dict) -> dict:
        row = {**base, "method": name, "family": family(name), "seconds": seconds,
               "cost": seconds / unit if unit > 0 else float("nan"), "info": info}
        if gt is not None:
            roc = evaluate_ground_truth(g, scores, gt)
            row.update(edge_auc=roc["edge_roc_auc"], node_auc=roc["node_roc_auc"])
        keeps = budget_circuits(g, scores, BUDGETS)
        unique: dict[int, int] = {}
        masks = []
        for k in keeps:
            if id(k) not in unique:
                unique[id(k)] = len(masks)
                masks.append(g.mask_from_edges(k))
        extra = {}
        if gt is not None:
            n = len(gt.edges)
            extra["topk"] = prune_dead(g, select(g, scores, n_edges=n))
            extra["ilp"] = ilp_select(g, scores, n, time_limit=60.0)
        if keep is not None:
            extra["own"] = keep.detach().cpu().bool()
        names = list(extra)
        vals = per_example(problem, masks + [g.mask_from_edges(extra[k]) for k in names])
        vals = vals.double()
        cv = CurveValues(torch.tensor([float(k.sum()) / g.n_edges for k in keeps],
                                      dtype=torch.float64),
                         vals[[unique[id(k)] for k in keeps]])
        curve = curve_from_values(BUDGETS, keeps, cv.values.mean(-1).tolist(), full, empty,
                                  g.n_edges)
        both = torch.cat([cv.values, ends])
        row.update(cpr=curve.cpr, cmd=curve.cmd, curve=cv, scores=scores,
                   cpr_ci=bootstrap(both, lambda v: _areas(cv.x, _normalized(v))[0], n_boot,
                                    LEVEL, seed),
                   cmd_ci=bootstrap(both, lambda v: _areas(cv.x, _normalized(v))[1], n_boot,
                                    LEVEL, seed))
        for i, k in enumerate(names):
            f = _norm(float(vals[len(masks) + i].mean()), full, empty)
            if k == "own":
                row.update(own_edges=int(extra[k].sum()), own_faith=f)
            else:
                row[f"faith_{k}"] = f
        return row

    outputs = {}
    for method in methods:
        out, seconds, error = score(problem, method, steps)
        if out is None:
            rows.append({**base, "method": method, "family": family(method), "seconds": seconds,
                         "error": error})
            continue
        try:
            rows.append(measure(method, out.scores,
                                out.keep if registry_selects(method) else None, seconds,
                                dict(out.info)))
        except Exception as e:  # scores the evaluation cannot use: a row that says why
            rows.append({**base, "method": method, "family": family(method),
                         "seconds": seconds, "error": f"evaluation failed: {type(e).__name__}: "
                                                      f"{str(e).splitlines()[0]}"})
            continue
        outputs[method] = (out.scores, seconds)
    attribution = [m for m in outputs if family(m) == "attribution"]
    seen = set()
    for name, members in ENSEMBLES.items():
        members = attribution if members is None else list(members)
        if len(members) < 2 or any(m not in outputs for m in members) \
                or frozenset(members) in seen:
            continue  # not every member ran (or was asked for), or the same as one before
        seen.add(frozenset(members))
        scores = ensemble_scores([outputs[m][0] for m in members], "mean", "max")
        rows.append(measure(name, scores, None, sum(outputs[m][1] for m in members),
                            {"members": members}))
    return rows


def registry_selects(method: str) -> bool:
    """Does the method choose its own circuit (its ``keep`` is reported)?"""
    from acdc_engine.plugins import registry

    return method != "exact" and registry().method(method).selects_circuit


def _norm(value, full, empty) -> float:
    return float("nan") if full == empty else (value - empty) / (full - empty)


def _f(v, digits=3) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and math.isnan(v):
        return "nan"
    text = f"{v:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text  # no "-0.000"


def _g(v) -> str:
    """A cost: 3 significant digits, no exponent."""
    if v is None:
        return ""
    if math.isnan(v):
        return "nan"
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def _ci(i) -> str:
    return "" if i is None else f"{_f(i.point)} [{_f(i.low)}, {_f(i.high)}]"


def _name(r: dict) -> str:
    return r["model"] if r["model"] == r["task"] else f"{r['model']} / {r['task']}"


def _own(r: dict) -> str:
    return "" if r.get("own_edges") is None else f"{r['own_edges']} ({_f(r['own_faith'], 2)})"


def _method(r: dict) -> str:
    return f"*{r['method']}*" if r["method"].startswith("(") else r["method"]


def table(rows: list[dict]) -> str:
    """The ground-truth models' table."""
    head = ("| model / task | metric | ablation | method | family | edge AUC | node AUC | CPR "
            "| CMD | faith. @ GT size, topk | faith. @ GT size, ilp | own circuit: edges "
            "(faith.) | time (s) | cost (fwd+bwd) |\n"
            "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        lead = f"| {_name(r)} | {r['metric']} | {r['ablation']} | {_method(r)} | " \
               f"{r.get('family', '')} | "
        if r.get("error"):
            lines.append(f"{lead}skipped: {r['error']} | | | | | | | {_f(r['seconds'], 2)} "
                         f"| |")
            continue
        lines.append(f"{lead}{_f(r.get('edge_auc'))} | {_f(r.get('node_auc'))} | "
                     f"{_f(r.get('cpr'))} | {_f(r.get('cmd'))} | {_f(r.get('faith_topk'))} | "
                     f"{_f(r.get('faith_ilp'))} | {_own(r)} | {_f(r.get('seconds'), 2)} | "
                     f"{_g(r.get('cost'))} |")
    if rows and rows[0].get("n_gt") is not None:
        lines.append("")
        lines.append("The *(ground truth)* rows give the ground-truth circuit's size and own "
                     "faithfulness in the *own circuit* column.")
    return "\n".join(lines)


def ioi_table(rows: list[dict]) -> str:
    """The toy IOI models' table: CPR and CMD with bootstrap intervals."""
    head = ("| model / task | ablation | examples | method | family | CPR [95 % CI] | "
            "CMD [95 % CI] | own circuit: edges (faith.) | time (s) | cost (fwd+bwd) |\n"
            "|---|---|---:|---|---|---:|---:|---:|---:|---:|")
    lines = [head]
    for r in rows:
        lead = (f"| {_name(r)} | {r['ablation']} | {r['n_examples']} | {r['method']} | "
                f"{r.get('family', '')} | ")
        if r.get("error"):
            lines.append(f"{lead}skipped: {r['error']} | | | {_f(r['seconds'], 2)} | |")
            continue
        lines.append(f"{lead}{_ci(r.get('cpr_ci'))} | {_ci(r.get('cmd_ci'))} | {_own(r)} | "
                     f"{_f(r.get('seconds'), 2)} | {_g(r.get('cost'))} |")
    return "\n".join(lines)


def best_lines(rows: list[dict]) -> str:
    """The best edge ROC AUC per model under the recommended ablation."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        cands = [r for r in rows if r["model"] == model and r["ablation"] == RECOMMENDED
                 and r.get("edge_auc") is not None and not math.isnan(r["edge_auc"])]
        if not cands:
            continue
        top = max(r["edge_auc"] for r in cands)
        who = sorted({f"{r['method']} ({r['metric']})" for r in cands if r["edge_auc"] == top})
        out.append(f"* **{model}**: edge ROC AUC **{top:.3f}** with {', '.join(who)}.")
    return "\n".join(out) or "(no ground-truth model in this run)"


def selection_line(rows: list[dict]) -> str:
    """How the ilp selection's circuit at the ground truth's size compares with topk's."""
    both = [r for r in rows if r.get("faith_topk") is not None and r.get("faith_ilp") is not None
            and not (math.isnan(r["faith_topk"]) or math.isnan(r["faith_ilp"]))]
    if not both:
        return "(no ground-truth model in this run)"
    d = [(r["faith_ilp"] - r["faith_topk"], r) for r in both]
    better = [t for t in d if t[0] > 0.01]
    worse = [t for t in d if t[0] < -0.01]
    text = (f"At the ground truth's size, the `ilp` circuit's faithfulness differs from the "
            f"`topk` circuit's by more than 0.01 in {len(better) + len(worse)} of {len(both)} "
            f"rows: higher in {len(better)}, lower in {len(worse)}.")
    if better:
        gain, r = max(better, key=lambda t: t[0])
        text += (f" Largest gain: {r['method']} on {r['model']} ({r['metric']}, "
                 f"{r['ablation']}), {_f(r['faith_topk'])} -> {_f(r['faith_ilp'])} (top-n "
                 f"then pruning can keep fewer edges than n; the integer program keeps a "
                 f"connected circuit of n).")
    return text


def _settings_of(rows: list[dict]) -> list[tuple]:
    return list(dict.fromkeys((r["model"], r["task"], r["metric"], r["ablation"]) for r in rows))


def comparisons(rows: list[dict], n_boot: int = N_BOOT, seed: int = 0) -> list[dict]:
    """Per setting: the best single attribution method (lowest CMD), the best mask
    optimization, the best ensemble, and the best challenger's CMD minus the attribution
    method's with its paired bootstrap interval."""
    out = []
    for key in _settings_of(rows):
        here = [r for r in rows if (r["model"], r["task"], r["metric"], r["ablation"]) == key
                and r.get("cmd") is not None and not math.isnan(r["cmd"])]

        def best(fam, here=here):
            c = [r for r in here if r["family"] == fam]
            return min(c, key=lambda r: r["cmd"]) if c else None

        attr, mask, ens = best("attribution"), best("mask optimization"), best("ensemble")
        challengers = [r for r in (mask, ens) if r is not None]
        if attr is None or not challengers:
            continue
        ch = min(challengers, key=lambda r: r["cmd"])
        diff = cmd_difference(attr["curve"], ch["curve"], attr["ends"], n_boot, LEVEL, seed)
        out.append({"key": key, "attr": attr, "mask": mask, "ens": ens, "challenger": ch,
                    "diff": diff, "rows": here})
    return out


def _points(r: dict) -> list[tuple[float, int, float]]:
    """(budget %, edges kept after pruning, normalized faithfulness) of ``r``'s curve."""
    from acdc_engine.evaluation.curves import BUDGETS

    cv, (full, empty) = r["curve"], r["ends"].mean(-1).tolist()
    return [(b, round(float(cv.x[i]) * r["n_edges"]),
             _norm(float(cv.values[i].mean()), full, empty)) for i, b in enumerate(BUDGETS)]


def _why(c: dict, rows_of: list[dict]) -> list[str]:
    """Generated reasons where a challenger family does not beat the best attribution method:
    where a mask optimization's curve falls below the attribution method's, an ensemble's CMD
    against its members'."""
    a, out = c["attr"], []
    m = c["mask"]
    if m is not None and m["cmd"] > a["cmd"] + TIE:
        pm, pa = _points(m), _points(a)
        gaps = [(b, nm, fm, na, fa) for (b, nm, fm), (_, na, fa) in zip(pm, pa)
                if fm < fa - 0.01]
        gaps = sorted(sorted(gaps, key=lambda t: t[4] - t[2], reverse=True)[:4])
        own = (f"it trains one circuit ({m['own_edges']} edges, faithfulness "
               f"{_f(m['own_faith'], 2)}), and ranked by its mask parameters "
               if m.get("own_edges") is not None else "")
        if gaps:
            pts = "; ".join(f"{b:g} %: {nm} edges, {_f(fm, 2)} vs {na}, {_f(fa, 2)}"
                            for b, nm, fm, na, fa in gaps)
            out.append(f"{m['method']}: {own}its top-n circuits fall below {a['method']}'s at "
                       f"(budget: edges kept after pruning, faithfulness; {m['method']} vs "
                       f"{a['method']}) {pts}.")
    e = c["ens"]
    if e is not None and e["cmd"] > a["cmd"] + TIE:
        members = [r for r in rows_of if r["method"] in e["info"].get("members", ())]
        if members:
            lo = min(members, key=lambda r: r["cmd"])
            hi = max(members, key=lambda r: r["cmd"])
            where = ("between" if e["cmd"] <= hi["cmd"] else "above both of")
            out.append(f"{e['method']} ({len(members)} members) has CMD {_f(e['cmd'])}, {where} "
                       f"its best member's ({lo['method']}, {_f(lo['cmd'])}) and its worst's "
                       f"({hi['method']}, {_f(hi['cmd'])}): averaging normalised scores mixes "
                       f"the weaker members' rankings into the best one's.")
    return out


def _keys(cs: list[dict]) -> str:
    return "; ".join(f"{c['key'][0]} ({c['key'][2]}, {c['key'][3]})" for c in cs)


def summary_lines(comps: list[dict]) -> str:
    """The "which is best" summary, generated from the numbers."""
    if not comps:
        return ("(this run has no setting with both an attribution method and a mask "
                "optimization or ensemble)")
    out = []
    wins, clear = [], []
    for c in comps:
        model, task, metric, ablation = c["key"]
        a, ch, d = c["attr"], c["challenger"], c["diff"]
        name = model if model == task else f"{model} / {task}"
        others = "; ".join(f"best {lab} {r['method']} {_f(r['cmd'])}"
                           for lab, r in (("mask optimization", c["mask"]),
                                          ("ensemble", c["ens"])) if r is not None)
        delta = ch["cmd"] - a["cmd"]
        interval = f"difference {delta:+.3f}, 95 % interval [{d.low:+.3f}, {d.high:+.3f}]"
        if delta < -TIE:
            verdict = f"**{ch['method']} beats it** ({interval}"
            verdict += ", beyond the interval)" if d.high < 0 else ", within the noise)"
            wins.append(c)
            if d.high < 0:
                clear.append(c)
        elif delta <= TIE:
            verdict = f"tie ({interval})"
        else:
            verdict = f"neither beats it ({interval})"
        out.append(f"* **{name}**, {metric}, {ablation}: best single attribution method "
                   f"{a['method']} CMD **{_f(a['cmd'])}**; {others}: {verdict}.")
        out += [f"  * {line}" for line in _why(c, c["rows"])]
    n = len(comps)

    def where(cs):
        return "; ".join(f"{c['key'][0]} ({c['key'][2]}, {c['key'][3]}) by "
                         f"{c['challenger']['method']}" for c in cs)

    noisy = [c for c in wins if c not in clear]
    ties = [c for c in comps if abs(c["challenger"]["cmd"] - c["attr"]["cmd"]) <= TIE]
    losses = [c for c in comps if c["challenger"]["cmd"] - c["attr"]["cmd"] > TIE]
    out.append("")
    if clear:
        text = (f"**Verdict**: mask optimization or an ensemble beats the best single "
                f"attribution method's CMD beyond the paired 95 % interval in {len(clear)} of "
                f"{n} settings: {where(clear)}.")
    else:
        text = (f"**Verdict**: in none of the {n} settings does mask optimization or an "
                f"ensemble beat the best single attribution method's CMD beyond the paired "
                f"95 % interval.")
    if noisy:
        text += f" Lower, but within the noise: {where(noisy)}."
    if ties:
        text += f" Equal CMD (within {TIE}) in {len(ties)}: {_keys(ties)}."
    if losses:
        text += f" The best attribution method is better in {len(losses)}: {_keys(losses)}."
    out.append(text + " Why, where it is not beaten: the sub-bullets above, and *Reading the "
                      "table* below (mask optimization, ensembles).")
    return "\n".join(out)


PROSE_HEAD = """# Validation against ground-truth circuits

Regenerate this page (numbers and text) with `python benchmarks/validate.py`
({n_examples} examples requested per task, seed {seed}; {versions}; {device}; generated {when}
in {total:.0f} s{partial}). What the ground truths are and how ROC AUC is computed:
[ground-truth.md](ground-truth.md); selections, ensembles, CPR and CMD:
[metrics.md](metrics.md).

Every method scores every edge of the model's graph; the scores are compared with the
ground-truth circuit of the model:

* **edge AUC / node AUC**: ROC AUC of `|score|` against membership in the ground truth (node
  score = the largest `|score|` of its edges; `input` and `logits` left out). 1 = every
  ground-truth edge outranks every other edge, 0.5 = chance (all scores tied gives 0.5).
* **CPR / CMD**: area under the normalized faithfulness curve of the method's top-n circuits at
  MIB's budgets (0.1 ... 100 % of the edges; higher is better), and the area between that curve
  and 1 (lower is better); the engine's curve (`acdc_engine.evaluation.curves`: x = the
  fraction of edges kept after pruning), not `mib_curve`'s.
* **faith. @ GT size, topk / ilp**: normalized faithfulness of the circuit of n edges, n = the
  number of ground-truth edges, chosen from the method's scores by two selections
  (`acdc_engine.evaluation.selection`): `topk` (the top n by `|score|`, dead ends pruned) and
  `ilp` (the connected circuit of at most n edges with the largest sum of `|score|`). The
  *(ground truth)* row gives the ground-truth circuit's own faithfulness under the same metric
  and ablation.
* **own circuit**: for a method that chooses its circuit (ACDC, mask optimization), the number
  of edges it keeps and that circuit's faithfulness.
* **time**: scoring only (loading and evaluation excluded), CPU, one run on a shared machine
  (differences under a factor of about 1.5 are noise).
* **cost (fwd+bwd)**: the scoring time divided by the time of one plain forward+backward of the
  same model on the same examples, measured in the same process just before the methods run
  (the model's own forward on the clean prompts, the task's metric at the last position, the
  backward to the token embeddings; the median of 7 after a warm-up). The models here are tiny
  (a forward+backward of all examples takes {unit_range}), so fixed Python overheads dominate
  and these costs are far above what the same methods cost on a GPT-2-size model.

Methods ({n_methods}): every method registered when the table was made ({methods}), and
`exact` (exact single-edge patching, `acdc_engine.scoring.exact_scores`: one patched forward per
edge; the score ACDC thresholds). Families: *attribution* (scores only), *mask optimization*
(learns an edge mask by gradient descent and chooses its circuit), *patching* (ACDC and its
variants: choose the circuit by patching), *exact*, and two *ensembles*
(`ensemble_scores(..., "mean", "max")`: each member's `|scores|` divided by its largest, then
the mean per edge): `mean(eap, eap-ig)` and `mean(attribution)`, the mean over every attribution
method that ran in the setting. An ensemble's time and cost are the sums of its members'.
Method settings: {settings}.

## Summary

Best edge ROC AUC per model under **{recommended} ablation**, the ablation these docs
recommend for recovering a ground-truth circuit (target: 0.95 or more):

{best}

{selections}

Published reference points (ACDC paper, edge ROC AUC): ACDC reaches 1.0 on both tracr programs
with zero ablation; with corrupted activations and the task metric it gets 0.68
(tracr-proportion = our tracr-frac-prevs) and 0.20 (tracr-reverse).

### Which is best: single attribution vs mask optimization and ensembles (CMD)

Per setting, the lowest CMD of a single attribution method against the lowest CMD of a
mask-optimization method or an ensemble; the interval is a paired percentile bootstrap
({n_boot} resamples of the examples, both curves recomputed from the same scores on each
resample) of the challenger's CMD minus the attribution method's (negative = the challenger is
better). Differences under {tie} are ties.

{which}

## Table: ground-truth models

{table}

## Toy IOI: CPR and CMD with bootstrap intervals

No ground truth; {ioi_ablations} ablation (the tasks' own); the intervals are 95 % percentile
bootstrap intervals over the examples ({n_boot} resamples): the examples are resampled with
replacement and the curve is recomputed from **the same scores** (the methods are not rerun on
each resample), with the full model and the empty circuit resampled with them. They show how
much the evaluation depends on which examples were drawn, not how much the scores do.

{ioi}
"""

PROSE_TAIL = """
## Reading the table: where and why methods fail

**Zero ablation is the ablation to use against a ground truth defined by the weights.** The
tracr ground truths (and the textbook induction circuit) list the edges through which the
model *computes* its answer. Zero ablation removes an edge's information entirely, so every such
edge matters, and exact patching (and ACDC, which thresholds the same quantity) ranks all of
them on top: edge AUC 1.0 on every model, as in the ACDC paper. Corrupted (resampled) ablation
only removes the information that *differs* between the clean and the corrupted prompt, so it
finds the circuit of the difference, whatever the method:

* tracr-reverse: the corrupted input has the same length (pairs must align token by token), so
  the whole length sub-circuit (`a0.0`, `m0`, `m1`, `m2`, the query of `a3.0`) computes the same
  values in both runs and no corrupted-activation method can see it: only the reversing head's
  value path and output remain (edge AUC 0.59 to 0.60). The ACDC paper's 0.20 for this setting
  has the same cause; its number differs because its ROC curve is traced by ACDC runs at many
  thresholds on its own data, where ours ranks the edges by one run's scores.
* tracr-frac-prevs: the positional edges into the aggregating head (`input->a1.0<q>`, `<k>`:
  indices, the same in both runs) are invisible; the `x`-detecting path is found (edge AUC 0.80;
  the paper: 0.68).
* induction: the corruption replaces only the first occurrence of the sequence, so the queries
  of the induction heads (the current token) and the previous-token head's positional
  attention are the same in both runs. The K-composition and copying edges are found (they are
  EAP-IG's top edges, and every ground-truth head is found: node AUC 1.0); the rest is not.

That is a property of the question, not a failure of the methods: the ground truth answers
"what does the model compute with", a corrupted pair asks "what carries the difference
between these two prompts".

**EAP cannot see distance metrics.** `l2` (and `kl_div`) measure the distance to the clean
output, which is at its minimum at the clean run, where EAP takes its gradient: every EAP score
is exactly 0, every edge ties, and the AUC is 0.5 by construction. Use a signed metric with EAP
(`logit_diff`), or EAP-IG, whose gradients are taken along the path from the ablated to the
clean input.

**EAP under saturated attention and step-function MLPs.** tracr's attention is nearly hard
(logit gaps of about 100/sqrt(d_head)) and its categorical MLPs are step functions (pairs of
ReLUs with slope 100): both are flat almost everywhere, so their gradients are ~0. On
tracr-reverse with `logit_diff`, EAP gives non-zero scores only to the last head's value path
and output (`input->a3.0<v>`, `a3.0->logits`); the other eight ground-truth edges, each of
which destroys the output when removed, score ~0 (edge AUC 0.945 only because rounding-level
values still order them partly). The trained induction model shows the same effect, milder
(EAP edge AUC 0.69 vs 1.0 for EAP-IG under zero ablation).

**EAP-IG nearly recovers tracr-reverse, and its top-n circuit still fails.** Integrating from
the zeroed input un-saturates the attention, and EAP-IG ranks 9 of the 10 ground-truth edges
on top (edge AUC 0.996). But the length head's contribution passes through `m0`, a step
function, whose gradient vanishes along most of the path, so `input->a0.0<v>` and `a0.0->m0`
score 0 and rank below `input->a3.0<q>`, a non-ground-truth edge (the BOS-fallback query, which
matters only at intermediate interpolation points). reverse is a chain in which every link is
necessary, so the top-10 circuit that misses one link computes nothing: faithfulness at the
ground truth's size 0.14 (logit_diff) and about 0 (l2), against 1.0 for exact patching and ACDC.
Edge AUC measures ranking, not whether the top of the ranking is a working circuit.

**Node AUC vs edge AUC.** A node's score is its strongest edge, so a node is found as soon as
one of its edges is; node AUC can be 1.0 where edge AUC is not (induction under corrupted
ablation).

**The ground truth's own faithfulness** is 1.0 for the tracr programs under zero ablation (the
ground truth is complete: ablating every other edge changes no output) and about 0.98 for the
induction model, whose expected circuit leaves out small contributions (V-composition from
the layer-0 heads into the induction heads' values, the second layer-0 head, the direct path
from the embeddings to the logits: single-edge effects of at most 0.33 in logit difference,
against at least 5 for every ground-truth edge).

**Mask optimization is a circuit finder, and CMD grades it as a ranking.** Edge Pruning and
UGS train an edge mask for one sparsity (Edge Pruning: 90 % of the edges removed, held by a
Lagrangian; UGS: a penalty per kept edge) to preserve KL divergence to the full model. Their
scores (the mask parameters) rank the edges for the curve, but nothing in the objective orders
the edges *inside* the trained circuit or outside it, so the top-n circuits at the other budgets
are often not connected and prune to fewer edges (the summary's sub-bullets list where the
curve falls below the attribution method's). Where the model's circuit is a chain whose every
link is necessary and whose gradients vanish (tracr-reverse under zero ablation: step-function
MLPs, saturated attention; see above), training the mask through the patched forward sees
what one gradient cannot, and Edge Pruning has the lowest CMD of every scoring method there,
ACDC and exact patching included. The trained circuit itself ("own circuit") is a separate
result, whose size is set by the sparsity target rather than by the task: with Edge Pruning's
default of 90 % of the edges removed, tracr-reverse's 77-edge graph keeps about 8 edges, fewer
than the ground truth's 10, so the trained circuit cannot be complete there while the ranking
of its mask parameters can be. UGS with MIB's penalty (`lamb=0.001`) keeps more edges than
Edge Pruning on the larger graphs; with {steps} steps and default settings neither is tuned
(`acdc sweep` searches `lr` and the sparsity).

**Ensembles average rankings.** `mean(eap, eap-ig)` divides each method's `|scores|` by its
largest and averages: it helps only where the members err on different edges, and it inherits
the weaker member's errors where they do not (EAP's zero gradients on tracr). The bootstrap
intervals of the summary say whether a difference from the best member is more than the
choice of examples. `mean(attribution)` also averages `info-flow-routes`, which uses no
counterfactual: under corrupted ablation it sees edges that no corrupted-activation method
can, which lifts the ensemble's edge AUC above the corrupted-ablation methods', but its own
faithfulness curve is poor (CMD 0.5 or more) and pulls the ensemble's CMD towards its own.

**Cost.** One EAP costs about one to three forward+backward passes of the same examples (a
corrupted forward, a clean forward and one backward); EAP-IG with `ig_steps=5` five to ten;
EAP-IG over activations one backward per layer and step (tens); exact patching one patched
forward per edge (hundreds of units on the 479-edge IOI graphs); ACDC tests every edge too,
but stacks up to 32 candidates in one forward (`speculate`), so tens; mask optimization one
patched forward+backward per step (about 40 to 400 units for {steps} steps). On models this small,
Python overhead per call is a large share of every method's time, so the ratios are upper
bounds for larger models; `benchmarks/attribution_cost.py` and `benchmarks/mask_opt_cost.py`
measure them on a GPT-2-small-shaped model.
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=64, help="examples per task (default 64)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "validation.md")
    ap.add_argument("--methods", default=None,
                    help="comma-separated methods to run (registered names or 'exact'; default: "
                         "all); the ensembles are added when their members run")
    ap.add_argument("--models", default=None,
                    help="comma-separated models (default: all of "
                         f"{', '.join(dict.fromkeys(c.model for c in CASES))})")
    ap.add_argument("--steps", type=int, default=MASK_STEPS,
                    help=f"mask-optimization steps (default {MASK_STEPS})")
    ap.add_argument("--boot", type=int, default=N_BOOT,
                    help=f"bootstrap resamples (default {N_BOOT})")
    args = ap.parse_args(argv)
    import os

    os.environ.setdefault("ACDC_PROGRESS", "0")
    torch.set_num_threads(1)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    only = None if args.methods is None else [m.strip() for m in args.methods.split(",")]
    methods = _methods(only)
    if only is not None and (unknown := sorted(set(only) - set(methods))):
        ap.error(f"unknown method(s) {unknown} (known: {', '.join(_methods())})")
    models = None if args.models is None else [m.strip() for m in args.models.split(",")]
    cases = [c for c in CASES if models is None or c.model in models]
    if models is not None and (unknown := sorted(set(models) - {c.model for c in CASES})):
        ap.error(f"unknown model(s) {unknown} (known: "
                 f"{', '.join(dict.fromkeys(c.model for c in CASES))})")
    t0 = time.perf_counter()
    rows = []
    for case in cases:
        for ablation in case.ablations:
            got = run_case(case, ablation, args.examples, args.seed, methods, args.steps,
                           args.boot)
            rows += got
            for r in got:
                print(f"{case.model:17s} {case.metric:10s} {ablation:9s} {r['method']:20s} "
                      f"edge {_f(r.get('edge_auc'))} CMD {_f(r.get('cmd'))} "
                      f"faith@gt {_f(r.get('faith_topk', r.get('own_faith')))} "
                      f"cost {_g(r.get('cost'))} {r.get('error') or ''}", flush=True)
    import nnsight
    import transformers

    from acdc_engine import __version__

    gt_rows = [r for r in rows if r.get("n_gt") is not None]
    ioi_rows = [r for r in rows if r.get("n_gt") is None]
    units = [r["fwd_bwd"] for r in rows]
    registered = _methods()[:-1]
    settings = {**SETTINGS, "steps": args.steps}
    partial = []
    if only is not None:
        partial.append(f"methods limited to {', '.join(methods)}")
    if models is not None:
        partial.append(f"models limited to {', '.join(models)}")
    text = PROSE_HEAD.format(
        n_examples=args.examples, seed=args.seed,
        versions=f"acdc-engine {__version__}, torch {torch.__version__}, transformers "
                 f"{transformers.__version__}, nnsight {nnsight.__version__}, Python "
                 f"{platform.python_version()}",
        device="CPU, float32, one thread",
        when=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        total=time.perf_counter() - t0,
        partial="; " + "; ".join(partial) if partial else "",
        unit_range=(f"{min(units) * 1e3:.1f} to {max(units) * 1e3:.1f} ms" if units else "-"),
        n_methods=len(registered), methods=", ".join(registered),
        settings=", ".join(f"`{k}={v}`" for k, v in settings.items()) + " where the method "
                 "has the setting (`steps`: the mask optimizations' optimizer steps; their "
                 "default is 300); otherwise its defaults (the mask optimizations preserve KL "
                 "divergence to the full model, or the task's metric on a one-output model)",
        recommended=RECOMMENDED, best=best_lines(gt_rows), selections=selection_line(gt_rows),
        n_boot=args.boot, tie=TIE, which=summary_lines(comparisons(rows, args.boot, args.seed)),
        table=table(gt_rows) if gt_rows else "(no ground-truth model in this run)",
        ioi_ablations=", ".join(sorted({r["ablation"] for r in ioi_rows})) or "corrupted",
        ioi=ioi_table(ioi_rows) if ioi_rows else "(no IOI model in this run)",
    ) + PROSE_TAIL.replace("{steps}", str(args.steps))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
