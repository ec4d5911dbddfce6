"""Does an attribution graph predict what ablating a feature does? Per graph, a small table.

    check = predicted_vs_actual(graph, model=lm, transcoders=tc)       # its top features
    print(check.table())       # feature, activation, predicted (direct, all paths), actual

For feature node ``s`` (activation ``a_s``) and the graph's target logit ``t`` (its first logit
node: the most likely token, as a logit minus the mean logit), the graph predicts:

* **direct**: ``-A[t, s]`` (the edge weights are already scaled by the source's activation);
* **through the graph**: the change ``-a_s`` at ``s`` carried along every path of the
  linear graph, each edge ``j -> i`` passing ``A[i, j] / a_j`` per unit of change of ``j``
  (the replacement model with attention patterns and norm scales frozen, and every downstream
  feature staying on its linear piece);

and the intervention does (:func:`~acdc_engine.features.interventions.intervene`): zero the
feature at its position, errors fixed at the unedited run's, everything else computed by the
model (attention and norms not frozen, later features re-encoded): the change of ``logit_t -
mean logit`` at the last position. ``ratio = actual / through-the-graph``; near 1 where the
graph's linearisation holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..errors import AcdcError

__all__ = ["PredictedActual", "Row", "predicted_vs_actual", "graph_effects"]


@dataclass
class Row:
    """One feature's line: ``layer``, ``pos``, ``feature``, its ``activation``, the graph's
    ``direct`` and ``predicted`` (all paths) change of the target logit, the ``actual`` one,
    ``ratio`` (actual / predicted)."""

    layer: int
    pos: int
    feature: int
    activation: float
    direct: float
    predicted: float
    actual: float

    @property
    def ratio(self) -> float:
        """``actual / predicted`` (NaN when the graph predicts no change)."""
        return self.actual / self.predicted if self.predicted != 0 else float("nan")


@dataclass
class PredictedActual:
    """The table of one graph: the ``target`` token it is about and the :class:`Row` s."""

    prompt: str
    target: str
    rows: list[Row]

    def table(self) -> str:
        """The table as text."""
        lines = [f"target logit {self.target!r} of {self.prompt!r}",
                 f"{'feature':>14} {'act':>8} {'direct':>10} {'predicted':>10} "
                 f"{'actual':>10} {'ratio':>7}"]
        for r in self.rows:
            name = f"L{r.layer}.f{r.feature}@{r.pos}"
            lines.append(f"{name:>14} {r.activation:8.3g} {r.direct:10.4g} {r.predicted:10.4g}"
                         f" {r.actual:10.4g} {r.ratio:7.3f}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready, each row with its ratio."""
        return {"prompt": self.prompt, "target": self.target,
                "rows": [{**asdict(r), "ratio": r.ratio} for r in self.rows]}


def graph_effects(graph, target: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per feature node, the graph's predicted change of logit node ``target`` when it is
    ablated: ``(direct [s], through every path [s])`` (see the module docstring)."""
    A = graph.adjacency_matrix.double()
    s, N = graph.n_features, graph.n_nodes
    m = len(graph.logit_ids)
    if not 0 <= target < m:
        raise AcdcError(f"the graph has {m} logit nodes; target {target} is not one")
    t = N - m + target
    acts = graph.activation_values[graph.selected_features].double()  # [s]
    per_unit = torch.zeros(N, N, dtype=torch.float64)
    nz = acts != 0
    per_unit[:, :s][:, nz] = A[:, :s][:, nz] / acts[nz]
    direct = -A[t, :s]
    # dx = -diag(acts) e_s carried along: total = sum_k P^k dx (a DAG: nilpotent)
    cur = torch.zeros(N, s, dtype=torch.float64)
    cur[torch.arange(s), torch.arange(s)] = -acts
    total = cur.clone()
    for _ in range(graph.n_layers + 2):
        cur = per_unit @ cur
        if not bool(cur.abs().gt(0).any()):
            break
        total += cur
    return direct.float(), total[t].float()


def predicted_vs_actual(graph, features=None, *, model, transcoders, target: int = 0,
                        top: int = 8) -> PredictedActual:
    """The table for ``features`` (feature node indices of ``graph``; default the ``top``
    with the largest predicted effect on the target logit): predicted direct and total
    effects of ablating each, and the actual change (see the module docstring)."""
    from .interventions import FeatureEdit, intervene

    direct, total = graph_effects(graph, target)
    if features is None:
        features = total.abs().argsort(descending=True)[:top].tolist()
    ids = graph.input_tokens[None].long()
    tid = int(graph.logit_ids[target])
    rows = []
    for i in features:
        kind, layer, pos, feat = graph.node(int(i))
        if kind != "feature":
            raise AcdcError(f"node {i} of the graph is a {kind} node, not a feature")
        out = intervene(model, transcoders, ids,
                        [FeatureEdit(int(layer), int(feat), positions=(int(pos),))], k=1)
        before, after = out.logits_before[0, 0].double(), out.logits_after[0, 0].double()
        actual = float((after[tid] - after.mean()) - (before[tid] - before.mean()))
        rows.append(Row(int(layer), int(pos), int(feat),
                        float(graph.activation_values[graph.selected_features[int(i)]]),
                        float(direct[int(i)]), float(total[int(i)]), actual))
    tok = getattr(model, "tokenizer", None)
    target_text = graph.logit_tokens[target] if graph.logit_tokens else \
        (tok.decode([tid]) if tok is not None else str(tid))
    return PredictedActual(graph.input_string, str(target_text), rows)
