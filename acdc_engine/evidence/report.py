"""The one-page report of a discovery run: hypothesis, evidence, interventions, uncertainty.

    path = write_report(ctx, out_dir)          # report.html (+ report.pdf with a converter)

One self-contained HTML file: pictures are embedded as data URIs and there is no script, font
or style sheet from elsewhere, so it opens offline and sends no request. Every sentence about
uncertainty is generated from the numbers (:mod:`.uncertainty`).
"""

from __future__ import annotations

import base64
import html
import shutil
import subprocess
from pathlib import Path

from .gather import RunContext, descriptive_evidence, stability_evidence, write_json

__all__ = ["write_report", "html_page", "to_pdf", "write_compare_page"]

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:980px;margin:24px auto;
padding:0 18px;color:#222;line-height:1.45}
h1{font-size:1.5em;margin-bottom:0}h2{font-size:1.15em;border-bottom:1px solid #ddd;
padding-bottom:3px;margin-top:1.6em}.sub{color:#666;margin-top:2px}
figure{margin:10px 0}figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.88em;color:#555}table{border-collapse:collapse;font-size:.9em}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:right}th{background:#f6f6f6}
td:first-child,th:first-child{text-align:left}.grid{display:grid;
grid-template-columns:1fr 1fr;gap:14px}.note{background:#f7f9fc;border-left:3px solid #2166ac;
padding:8px 12px}ul.unc li{margin:3px 0}code{font-size:.92em}
"""


def _img(path: Path | None, caption: str) -> str:
    if path is None or not Path(path).exists():
        return ""
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _pct(d: dict) -> str:
    return f"{d['point']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"


def html_page(title: str, sections: list[tuple[str, str]], subtitle: str = "") -> str:
    """A page of ``(heading, html body)`` sections with the report's style."""
    body = "".join(f"<h2>{html.escape(h)}</h2>{b}" for h, b in sections)
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>"
            f"{html.escape(title)}</title><style>{CSS}</style></head><body><h1>"
            f"{html.escape(title)}</h1><p class='sub'>{html.escape(subtitle)}</p>{body}"
            "</body></html>")


def write_report(ctx: RunContext, out_dir: Path | None = None, n_stability: int = 5,
                 n_boot: int = 1000, stability: dict | None = None) -> Path:
    """Compute the evidence of ``ctx``'s run and write ``report.html`` (and its pictures and
    ``evidence.json``) into ``out_dir`` (default: the run directory, under ``report/``)."""
    from . import plots

    out = Path(out_dir) if out_dir is not None else ctx.out_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    p, c, params = ctx.problem, ctx.circuit, ctx.params
    g = p.graph
    st = stability or stability_evidence(ctx, n=n_stability, n_boot=n_boot)
    ev = descriptive_evidence(ctx)
    circuit_png = ctx.run_dir / "circuit.png" if ctx.run_dir is not None else None
    if circuit_png is None or not circuit_png.exists():
        from ..render import render_circuit

        render_circuit(c, out)
        circuit_png = out / "circuit.png"
    writers = [n.name for n in g.writers]
    pics = {
        "attention": plots.plot_attention(ev["attention"], out / "attention.png", ev["tokens"]),
        "lens": plots.plot_logit_lens(ev["logit_lens"], out / "logit_lens.png"),
        "dla": plots.plot_dla(ev["dla"], writers, out / "dla.png"),
        "tokens": plots.plot_tokens(ev["token_attribution"], out / "tokens.png", ev["tokens"]),
        "patching": plots.plot_patching(ev["patching"], out / "patching.png"),
        "ablation": plots.plot_ablation(ev["ablation"], out / "ablation.png"),
    }
    if "curve" in st:
        from .uncertainty import CurveIntervals, Interval

        cv = st["curve"]
        ci = CurveIntervals(cv["budgets"], cv["fractions"],
                            [Interval(**i) for i in cv["faithfulness"]],
                            Interval(**cv["cpr"]), Interval(**cv["cmd"]))
        pics["curve"] = plots.plot_curve_band(ci, out / "curve_band.png")
    if "stability" in st:
        from .uncertainty import Stability

        s = st["stability"]
        pics["stability"] = plots.plot_stability(
            Stability(s["reference"], s["circuits"], s["labels"], s["kind"]),
            out / "stability.png")

    f = st["faithfulness"]
    model, task = params.get("model"), params.get("task")
    hyp = (f"<p class='note'>On task <b>{html.escape(str(task))}</b>, model <b>"
           f"{html.escape(str(model))}</b> computes the behaviour (metric "
           f"<code>{html.escape(str(params.get('metric')))}</code>, removed edges replaced by "
           f"their <code>{html.escape(str(params.get('ablation')))}</code> value) through the "
           f"circuit below: {c.number_of_edges()} of {g.n_edges} edges and "
           f"{c.number_of_nodes()} nodes, found by <code>{html.escape(str(params.get('method')))}"
           f"</code>. It keeps normalized faithfulness {_pct(f)} (95% interval, "
           f"{st['n_examples']} examples).</p><p>Example prompt: <code>"
           f"{html.escape(ev['example'])}</code></p>")
    hyp += _img(circuit_png, "the circuit (blue: removing the edge hurts the behaviour)")
    ab = ev["ablation"]
    ab_rows = [[n, f"{e.point:+.4g}", f"[{e.low:+.4g}, {e.high:+.4g}]", f"{fr:+.1%}",
                "yes" if e.excludes_zero() else "no"]
               for n, e, fr in zip(ab.nodes, ab.effects, ab.fraction)]
    ab_rows.sort(key=lambda r: -abs(float(r[1])))
    pt = ev["patching"]
    best = sorted(zip(pt.nodes, pt.restored_all.tolist()), key=lambda t: -abs(t[1]))[:5]
    causal = (
        _img(pics.get("curve"), "faithfulness at each edge budget with its 95% bootstrap band")
        + _img(pics["patching"], "activation patching: share of the clean-vs-corrupted gap "
               "restored by patching each node's clean output into the corrupted run, per "
               f"position and at all positions (last column); {ev['patching_examples']} "
               "examples")
        + "<p>Patching at all positions restores most for: "
        + ", ".join(f"{html.escape(n)} ({v:.2f})" for n, v in best) + ".</p>"
        + _img(pics["ablation"], f"{ab.source} ablation of each node over all examples")
        + _table(["node", "metric change", "95% interval", "share of behaviour lost",
                  "interval excludes 0"], ab_rows[:12]))
    desc = ("<div class='grid'>"
            + _img(pics["attention"], "attention patterns, mean over examples")
            + _img(pics["lens"], "logit lens: logit difference and answer rank per layer")
            + _img(pics["dla"], "direct logit attribution of every writer")
            + _img(pics["tokens"], "integrated-gradients attribution per input token")
            + "</div>")
    unc = "<ul class='unc'>" + "".join(f"<li>{html.escape(s)}</li>" for s in st["sentences"])
    unc += "</ul>" + _img(pics.get("stability"), "how often each edge is kept across subsamples")
    repro = ctx.record.get("command")
    foot = (f"<p>Run <code>{html.escape(str(ctx.run_id))}</code>"
            + (f"; reproduce with <code>{html.escape(repro)}</code>" if repro else "") + ".</p>")
    page = html_page(
        f"Circuit report: {task} in {model}",
        [("Hypothesis", hyp), ("Descriptive evidence", desc),
         ("Interventions (causal evidence)", causal), ("What remains uncertain", unc),
         ("Provenance", foot)],
        subtitle=f"method {params.get('method')}, metric {params.get('metric')}, "
                 f"ablation {params.get('ablation')}, {st['n_examples']} examples")
    write_json(out / "evidence.json", {
        **st, "activation_patching": pt.as_dict(), "ablation": ab.as_dict(),
        "dla": dict(zip(writers, ev["dla"].tolist()))})
    path = out / "report.html"
    path.write_text(page)
    return path


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def to_pdf(html_path: Path, timeout: float = 120) -> Path | None:
    """Print the page to PDF with headless Chromium when one is installed (else None)."""
    exe = chromium()
    if exe is None:
        return None
    pdf = html_path.with_suffix(".pdf")
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
           f"--print-to-pdf={pdf}", html_path.resolve().as_uri()]
    try:
        subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return pdf if pdf.exists() and pdf.stat().st_size > 0 else None


def write_compare_page(path: Path, names: tuple[str, str], task: str, comparison, deltas,
                       cross: list[list[float]], faithfulness: tuple[float, float],
                       pictures: dict) -> Path:
    """The base-vs-tuned page of ``acdc compare --discover``: what changed, with intervals,
    and whether each circuit transfers; sentences generated from the numbers."""
    a, b = names
    sig = [d for d in deltas if d.delta.excludes_zero()]
    sentences = [
        f"The circuits share {len(comparison.shared)} edges; {len(comparison.only_a)} are only "
        f"in {a} and {len(comparison.only_b)} only in {b} (edge Jaccard "
        f"{comparison.edge_jaccard:.2f}).",
        f"Nodes only in {a}: {', '.join(comparison.nodes_only_a) or 'none'}; only in {b}: "
        f"{', '.join(comparison.nodes_only_b) or 'none'}.",
        f"{len(sig)} of {len(deltas)} edges' scores changed beyond noise (95% bootstrap "
        f"intervals of the per-example change exclude 0); the other changes could be noise.",
        f"Each circuit in its own model: {a} {faithfulness[0]:.3f}, {b} {faithfulness[1]:.3f} "
        f"normalized faithfulness; {a}'s circuit in {b}: {cross[0][1]:.3f}, {b}'s circuit in "
        f"{a}: {cross[1][0]:.3f}.",
        *[f"Warning: {w}." for w in comparison.warnings],
    ]
    rows = [[d.edge, d.named(names), f"{d.score_a:+.4g}", f"{d.score_b:+.4g}",
             f"{d.delta.point:+.4g}", f"[{d.delta.low:+.4g}, {d.delta.high:+.4g}]",
             "yes" if d.delta.excludes_zero() else "no"] for d in deltas[:25]]
    body = [
        ("What changed", "<ul class='unc'>" + "".join(f"<li>{html.escape(s)}</li>"
                                                      for s in sentences) + "</ul>"
         + _img(pictures.get("diff"), f"both circuits on one layout ({a} vs {b})")),
        ("Score changes with intervals", _img(pictures.get("deltas"), "largest changes")
         + _table(["edge", "where", f"score in {a}", f"score in {b}", "change",
                   "95% interval", "beyond noise"], rows)),
        ("Does each circuit transfer?", _table(
            ["circuit of \\ evaluated in", a, b],
            [[n, f"{r[0]:.3f}", f"{r[1]:.3f}"] for n, r in zip(names, cross)])),
    ]
    path = Path(path)
    path.write_text(html_page(f"{a} vs {b} on {task}", body,
                              subtitle="circuits found with the same method, settings and "
                                       "examples"))
    return path
