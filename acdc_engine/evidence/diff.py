"""Base vs fine-tuned: per-example edge scores, score changes with intervals, a diff diagram.

    sa = per_example_scores(problem_base, "eap")          # [n_examples, n_edges]
    sb = per_example_scores(problem_tuned, "eap")
    deltas = score_deltas(graph, sa, sb, edges)            # tuned - base, with 95% intervals
    draw_diff(graph, comparison, deltas, "out/diff.png")   # one layout, both circuits

Both models are scored on the same examples, so a score change is a paired difference per
example and its bootstrap interval tells a real change from noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import AcdcError
from ..graph import Graph
from ..problem import Problem
from ..scoring.attribution import IG_STEPS
from .uncertainty import Interval, bootstrap

__all__ = ["per_example_scores", "ScoreDelta", "score_deltas", "draw_diff", "single_examples"]


def single_examples(problem: Problem, chunk: int = 1):
    """The problem split into problems of ``chunk`` consecutive examples (batch order);
    the ablation object (mean activations) is shared."""
    for i, b in enumerate(problem.batches):
        abl = problem._ablated.get(i)
        for s in range(0, len(b), chunk):
            t = torch.arange(s, min(s + chunk, len(b)), device=b.clean.device)
            sub = b.select(t)
            out = Problem(problem.model, [sub], problem.metric, problem.ablation, problem.cache)
            if abl is not None:
                out._ablated = {0: abl if abl.shape[1] == 1 else abl.index_select(1, t)}
            yield out


def per_example_scores(problem: Problem, method: str = "eap",
                       ig_steps: int = IG_STEPS) -> torch.Tensor:
    """Attribution scores of every edge for every example: ``[n_examples, n_edges]`` in batch
    order (their mean is :func:`acdc_engine.scoring.attribute`'s score). ``method``: ``eap``
    or ``eap-ig``."""
    from ..scoring import ATTRIBUTION_METHODS, attribute

    if method not in ATTRIBUTION_METHODS:
        raise AcdcError(f"per-example scores need an attribution method "
                        f"({', '.join(ATTRIBUTION_METHODS)}), got {method!r}")
    rows = [attribute(p, method, ig_steps=ig_steps, progress=False)
            for p in single_examples(problem)]
    return torch.stack(rows)


@dataclass(frozen=True)
class ScoreDelta:
    """One edge's score in A and B (mean over examples; None = not in that circuit) and the
    change ``B - A`` of the per-example scores with its bootstrap interval."""

    edge: str
    in_a: bool
    in_b: bool
    score_a: float
    score_b: float
    delta: Interval

    @property
    def status(self) -> str:
        return "shared" if self.in_a and self.in_b else ("only A" if self.in_a else "only B")

    def named(self, names: tuple[str, str]) -> str:
        """The status with the models' names: ``shared``, ``only base``, ``only tuned``."""
        return self.status.replace("A", names[0]).replace("B", names[1])

    def as_dict(self, names: tuple[str, str] = ("A", "B")) -> dict:
        return {"edge": self.edge, "status": self.named(names), "score_a": self.score_a,
                "score_b": self.score_b, "delta": self.delta.as_dict()}


def score_deltas(graph: Graph, scores_a: torch.Tensor, scores_b: torch.Tensor,
                 edges_a: list[str], edges_b: list[str], n_boot: int = 1000) -> list[ScoreDelta]:
    """For every edge of either circuit: ``B - A`` with its interval, largest change first.
    ``scores_*``: ``[n_examples, n_edges]`` on the same examples."""
    if scores_a.shape != scores_b.shape:
        raise AcdcError(f"per-example scores differ in shape ({tuple(scores_a.shape)} vs "
                        f"{tuple(scores_b.shape)}): the models must see the same examples")
    sa, sb = set(edges_a), set(edges_b)
    out = []
    for e in sorted(sa | sb):
        i = graph.edge_index[e]
        d = scores_b[:, i] - scores_a[:, i]
        out.append(ScoreDelta(e, e in sa, e in sb, float(scores_a[:, i].mean()),
                              float(scores_b[:, i].mean()), bootstrap(d, n_boot=n_boot)))
    return sorted(out, key=lambda t: -abs(t.delta.point))


def draw_diff(graph: Graph, deltas: list[ScoreDelta], path, title: str = "",
              names: tuple[str, str] = ("base", "tuned")) -> Path:
    """Both circuits on one layout: line style says where an edge is (solid: both, dashed: only
    A, dotted: only B), colour the score change B - A (grey when its interval contains 0)."""
    from ..render.layout import layout, route
    from ..render.style import FILL, OUTLINE, need_matplotlib

    need_matplotlib()
    from matplotlib import colormaps
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import FancyBboxPatch, PathPatch
    from matplotlib.path import Path as MPath

    present = {n for d in deltas for n in d.edge.split("<")[0].split("->")}
    lay = layout(graph, present)
    fig = Figure(figsize=(max(6.0, 1.1 * graph.n_heads + 3), 0.9 * lay.top + 2.2))
    ax = fig.add_axes((0.04, 0.04, 0.78, 0.84))
    ax.set_xlim(lay.left - 0.3, lay.right + 0.3)
    ax.set_ylim(-0.6, lay.top + 0.6)
    ax.axis("off")
    top = max((abs(d.delta.point) for d in deltas), default=1.0) or 1.0
    norm, cmap = Normalize(-top, top), colormaps["RdBu"]
    style = {"shared": "-", "only A": (0, (5, 3)), "only B": (0, (1, 2))}
    edges = [graph.edge(d.edge) for d in deltas]
    for d, path_ in sorted(zip(deltas, route(lay, edges)), key=lambda t: abs(t[0].delta.point)):
        colour = cmap(norm(d.delta.point)) if d.delta.excludes_zero() else "#aaaaaa"
        m = (abs(d.delta.point) / top) ** 0.7
        ax.add_artist(PathPatch(MPath(*path_), facecolor="none", edgecolor=colour,
                                lw=0.8 + 3 * m, ls=style[d.status], alpha=0.9))
    for b in lay.boxes.values():
        ax.add_artist(FancyBboxPatch((b.x - b.w / 2, b.y - b.h / 2), b.w, b.h,
                                     boxstyle="round,pad=0.03",
                                     facecolor=FILL[b.kind] if b.present else "white",
                                     edgecolor=OUTLINE[b.kind] if b.present else "#dddddd",
                                     zorder=10))
        ax.text(b.x, b.y, b.name, ha="center", va="center", fontsize=8, zorder=11,
                color="#222" if b.present else "#c4c4c4")
    a, bname = names
    handles = [Line2D([], [], color="#333", ls=style["shared"], label="in both circuits"),
               Line2D([], [], color="#333", ls=style["only A"], label=f"only in {a}"),
               Line2D([], [], color="#333", ls=style["only B"], label=f"only in {bname}"),
               Line2D([], [], color=cmap(norm(top)), lw=3, label=f"score rises in {bname}"),
               Line2D([], [], color=cmap(norm(-top)), lw=3, label=f"score falls in {bname}"),
               Line2D([], [], color="#aaaaaa", lw=3, label="change within noise (95%)")]
    fig.legend(handles=handles, loc="upper right", fontsize=8, frameon=False)
    fig.suptitle(title or f"{a} vs {bname}: circuit difference", fontsize=11, x=0.4)
    fig.text(0.04, 0.885, "score: the metric's change when the edge is removed\n(per "
             "example, the same examples in both models)", ha="left", fontsize=8,
             color="#555")
    path = Path(path).with_suffix(".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, facecolor="white")
    return path
