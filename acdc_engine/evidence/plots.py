"""Pictures of the evidence (matplotlib, imported lazily: ``pip install 'acdc-engine[render]'``).

Each function draws one figure from a result of :mod:`.descriptive`, :mod:`.causal` or
:mod:`.uncertainty` and writes it as a PNG at ``path``; it returns the path::

    plot_attention(pats, "out/attention.png", tokens=toks)    # pats [L, H, b, q, k]
    plot_patching(activation_patching(problem), "out/patching.png")
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from ..render.style import BLUE, RED, need_matplotlib

__all__ = ["plot_attention", "plot_logit_lens", "plot_dla", "plot_patching", "plot_ablation",
           "plot_stability", "plot_tokens", "plot_curve_band", "plot_deltas", "plot_probes",
           "plot_neurons"]


def _fig(w: float, h: float):
    need_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h))


def _save(fig, path) -> Path:
    path = Path(path).with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, facecolor="white", bbox_inches="tight")
    return path


def plot_attention(pats: torch.Tensor, path, tokens: list[str] | None = None,
                   title: str = "attention patterns (mean over examples)") -> Path:
    """Grid of every head's pattern (rows: layers, columns: heads), averaged over examples."""
    L, H = pats.shape[:2]
    mean = pats.float().mean(2)  # [L, H, q, k]
    fig = _fig(1.7 * H + 0.6, 1.7 * L + 0.6)
    axes = fig.subplots(L, H, squeeze=False)
    for layer in range(L):
        for h in range(H):
            ax = axes[layer][h]
            ax.imshow(mean[layer, h].numpy(), cmap="Blues", vmin=0, vmax=1)
            ax.set_title(f"a{layer}.{h}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    if tokens is not None and len(tokens) <= 12:
        ax = axes[-1][0]
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=6)
        ax.set_yticks(range(len(tokens)), tokens, fontsize=6)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_logit_lens(lens, path, title: str = "logit lens") -> Path:
    """Mean logit difference (band: 10th-90th percentile) and mean answer rank per layer."""
    fig = _fig(6.4, 3.2)
    ax1, ax2 = fig.subplots(1, 2)
    x = list(range(lens.logit_diff.shape[0]))
    d = lens.logit_diff.float()
    ax1.plot(x, d.mean(1).tolist(), color=BLUE, marker="o")
    ax1.fill_between(x, d.quantile(0.1, dim=1).tolist(), d.quantile(0.9, dim=1).tolist(),
                     color=BLUE, alpha=0.2)
    ax1.axhline(0, color="#999", lw=0.8)
    ax1.set_xlabel("after layer (0 = embeddings)")
    ax1.set_ylabel("logit difference")
    ax2.plot(x, lens.answer_rank.float().mean(1).tolist(), color=RED, marker="o")
    ax2.set_xlabel("after layer (0 = embeddings)")
    ax2.set_ylabel("mean rank of the answer (0 = top)")
    for ax in (ax1, ax2):
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _bars(names, values, path, title, ylabel, low=None, high=None) -> Path:
    fig = _fig(max(4.0, 0.32 * len(names) + 1.5), 3.2)
    ax = fig.subplots()
    colors = [BLUE if v >= 0 else RED for v in values]
    yerr = None
    if low is not None:
        yerr = [[max(v - lo, 0) for v, lo in zip(values, low)],
                [max(hi - v, 0) for v, hi in zip(values, high)]]
    ax.bar(range(len(names)), values, color=colors, yerr=yerr, capsize=2, ecolor="#333")
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
    ax.axhline(0, color="#999", lw=0.8)
    ax.set_ylabel(ylabel)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_dla(dla: torch.Tensor, names: list[str], path,
             title: str = "direct logit attribution") -> Path:
    """One bar per writer: its direct effect on the metric (mean over examples)."""
    return _bars(names, dla.tolist(), path, title, "direct effect on the metric")


def plot_patching(result, path, title: str = "activation patching: share restored") -> Path:
    """Heatmap nodes x positions of the share of the behaviour restored, plus the node patched
    at every position (last column)."""
    data = torch.cat([result.restored, result.restored_all[:, None]], 1)
    n, p = data.shape
    fig = _fig(0.45 * p + 2.5, 0.22 * n + 1.5)
    ax = fig.subplots()
    lim = max(1.0, float(data.abs().nan_to_num().max()))
    im = ax.imshow(data.numpy(), cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    # prompts of several lengths are aligned at their last token: label positions from it
    cols = list(result.tokens or [f"last-{p - 2 - i}" if i < p - 2 else "last"
                                  for i in range(p - 1)]) + ["all"]
    ax.set_xticks(range(p), cols, rotation=90, fontsize=7)
    ax.set_yticks(range(n), result.nodes, fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.04)
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_ablation(result, path, title: str | None = None) -> Path:
    """One bar per node: the metric change when it is ablated, with its 95% interval."""
    e = result.effects
    return _bars(result.nodes, [i.point for i in e], path,
                 title or f"{result.source} ablation of each node (95% intervals)",
                 "metric change", [i.low for i in e], [i.high for i in e])


def plot_stability(st, path, top: int = 30) -> Path:
    """How often the least stable edges of the reference circuit (and the edges other
    circuits add) are kept; the reference edges kept everywhere are only counted."""
    freq = st.frequency()
    ref_set = set(st.reference)
    shaky = sorted((e for e in st.reference if freq.get(e, 0) < 1), key=lambda e: freq.get(e, 0))
    extra = sorted((e for e in freq if e not in ref_set), key=lambda e: -freq[e])
    names = (shaky + extra)[:top] or sorted(st.reference)[:top]
    solid = sum(freq.get(e, 0) >= 1 for e in st.reference)
    fig = _fig(max(4.0, 0.3 * len(names) + 1.5), 3.4)
    ax = fig.subplots()
    ref = set(st.reference)
    ax.bar(range(len(names)), [freq.get(e, 0) for e in names],
           color=[BLUE if e in ref else "#bbbbbb" for e in names])
    ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel(f"share of {len(st.circuits)} {st.kind} keeping it")
    ax.set_title(f"circuit stability across {st.kind}: {solid} of {len(st.reference)} edges "
                 "kept everywhere; the others\n(blue: in the reference circuit, grey: added "
                 "by other circuits)", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def plot_tokens(attr: torch.Tensor, path, tokens: list[str] | None = None,
                title: str = "token attribution (mean over examples)") -> Path:
    """Mean attribution per input position, with one dot per example."""
    mean = attr.nanmean(0)
    names = tokens if tokens is not None and len(tokens) == len(mean) else \
        [str(i) for i in range(len(mean))]
    return _bars(names, mean.tolist(), path, title, "effect on the metric")


def plot_curve_band(ci, path, title: str = "faithfulness curve (95% intervals)") -> Path:
    """The faithfulness curve with its bootstrap band (a :class:`CurveIntervals`)."""
    fig = _fig(6.0, 3.6)
    ax = fig.subplots()
    pts = sorted((b, i) for b, i in zip(ci.budgets, ci.faithfulness) if b > 0
                 and math.isfinite(i.point))
    xs = [b for b, _ in pts]
    ax.plot(xs, [i.point for _, i in pts], color=BLUE, marker="o")
    ax.fill_between(xs, [i.low for _, i in pts], [i.high for _, i in pts], color=BLUE,
                    alpha=0.2)
    ax.set_xscale("log")
    ax.axhline(1, color="#2a9d55", ls="--", lw=1)
    ax.axhline(0, color="#999", ls=":", lw=0.8)
    ax.set_xlabel("edges kept (% of the model's edges)")
    ax.set_ylabel("normalized faithfulness")
    ax.set_title(f"{title}: CPR {ci.cpr}, CMD {ci.cmd}", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def plot_deltas(names: list[str], intervals: list, path,
                title: str = "score change (tuned - base), 95% intervals") -> Path:
    """Per edge: a score change with its interval (a horizontal forest plot)."""
    fig = _fig(6.0, 0.25 * len(names) + 1.2)
    ax = fig.subplots()
    y = list(range(len(names)))[::-1]
    for yi, iv in zip(y, intervals):
        colour = (BLUE if iv.point >= 0 else RED) if iv.excludes_zero() else "#999999"
        ax.plot([iv.low, iv.high], [yi, yi], color=colour, lw=2)
        ax.plot([iv.point], [yi], "o", color=colour, ms=4)
    ax.axvline(0, color="#666", lw=0.8)
    ax.set_yticks(y, names, fontsize=7)
    ax.set_title(title + " (grey: interval contains 0)", fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def plot_probes(res, path) -> Path:
    """Held-out probe accuracy per layer, its shuffled-label control and the majority rate."""
    fig = _fig(5.6, 3.2)
    ax = fig.subplots()
    x = list(range(len(res.accuracy)))
    ax.plot(x, res.accuracy, marker="o", color=BLUE, label="probe (held out)")
    ax.plot(x, res.control, marker="s", color="#999999", label="shuffled-label control")
    ax.axhline(res.chance, color=RED, ls=":", lw=1, label="majority class")
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("after layer (0 = embeddings)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"linear probes for {res.label!r}", fontsize=10)
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)


def plot_neurons(result, path, top: int = 40) -> Path:
    """Neuron-group ablation (a :class:`~.neurons.NeuronAblationResult`): one bar per group
    (and the whole MLP) with its 95% interval; beside it, when computed, the ``top`` neurons'
    first-order direct effects."""
    fig = _fig(9.0 if result.direct is not None else 5.0, 3.4)
    axes = fig.subplots(1, 2 if result.direct is not None else 1, squeeze=False,
                        gridspec_kw={"wspace": 0.4})[0]
    ax = axes[0]
    ivs = [*result.effects, result.mlp_effect]
    names = [f"{n} ({len(i)})" for n, i in zip(result.groups, result.indices)]
    names.append(f"all ({result.d_mlp})")
    vals = [i.point for i in ivs]
    yerr = [[max(v - i.low, 0) for v, i in zip(vals, ivs)],
            [max(i.high - v, 0) for v, i in zip(vals, ivs)]]
    ax.bar(range(len(ivs)), vals, yerr=yerr, capsize=2, ecolor="#333",
           color=[BLUE if v >= 0 else RED for v in vals[:-1]] + ["#999999"])
    ax.set_xticks(range(len(ivs)), names, rotation=60, fontsize=7, ha="right")
    ax.axhline(0, color="#999", lw=0.8)
    ax.set_ylabel("metric change (ablated - full)")
    ax.set_title(f"m{result.layer} neuron groups, {result.source} ablation (95% intervals)",
                 fontsize=9)
    if result.direct is not None:
        ax2 = axes[1]
        d = result.direct.float()
        order = d.abs().argsort(descending=True)[:top]
        ax2.bar(range(len(order)), d[order].tolist(),
                color=[BLUE if v >= 0 else RED for v in d[order].tolist()])
        ax2.set_xticks(range(len(order)), [str(i) for i in order.tolist()], rotation=90,
                       fontsize=6)
        ax2.axhline(0, color="#999", lw=0.8)
        ax2.set_ylabel("direct effect (first order)")
        ax2.set_title(f"the {len(order)} neurons with the largest |direct effect|", fontsize=9)
    for a in axes:
        a.spines[["top", "right"]].set_visible(False)
    return _save(fig, path)
