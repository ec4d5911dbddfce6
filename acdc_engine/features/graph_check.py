"""Does an attribution graph predict what ablating a feature does? Per graph, a small table.

    check = predicted_vs_actual(graph, model=lm, transcoders=tc)   # (features.interventions)
    print(check.table())       # feature, activation, predicted (direct, all paths), actual
    direct, total = graph_effects(graph)                            # the graph's side alone

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

__all__ = ["PredictedActual", "Row", "graph_effects"]


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
