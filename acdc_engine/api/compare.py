"""Does a circuit still work in another model? The cross-faithfulness table.

    from acdc_engine.api import cross_faithfulness
    table = cross_faithfulness([circuit_base, circuit_tuned], ["base", "tuned"], task="ioi")

``table[i][j]`` is the normalized faithfulness of circuit ``i`` evaluated in model ``j``: the
diagonal is each circuit in its own model; off the diagonal, whether a circuit transfers.
The CLI is ``acdc compare A/circuit.json B/circuit.json [--models M_A M_B --task T]``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import AcdcError
from ..evaluation.compare import as_circuit
from ..metrics import Faithfulness
from .setup import build_problem, load_model, load_task

__all__ = ["cross_faithfulness", "CrossConfig"]


@dataclass
class CrossConfig:
    """How circuits are evaluated across models; None = the first circuit's setting."""

    task: str | None = None
    metric: str | None = None
    ablation: str | None = None
    n_examples: int | None = None
    batch_size: int = 32
    seed: int = 0
    device: str | None = None
    dtype: str | None = None


def cross_faithfulness(circuits: list, models: list, task: str | None = None,
                       config: CrossConfig | None = None, **options) -> list[list[float]]:
    """Normalized faithfulness of each circuit (rows) in each model (columns).

    ``circuits`` are Circuits, networkx circuits or circuit.json paths; ``options`` are
    CrossConfig fields. Each model is loaded once and its ablated activations computed once for
    all circuits."""
    cfg = config or CrossConfig()
    for k, v in options.items():
        if not hasattr(cfg, k):
            raise TypeError(f"unknown option {k!r}")
        setattr(cfg, k, v)
    cs = [as_circuit(c) for c in circuits]
    first = cs[0].attrs
    task_obj = load_task(task or cfg.task or first.get("task_ref") or first["task"])
    table = [[float("nan")] * len(models) for _ in cs]
    for j, model in enumerate(models):
        lm = load_model(model, device=cfg.device, dtype=cfg.dtype)
        problem, _ = build_problem(
            lm, task_obj, metric=cfg.metric or first.get("metric"),
            ablation=cfg.ablation or first.get("ablation"),
            n_examples=cfg.n_examples or first.get("n_examples"), batch_size=cfg.batch_size,
            seed=cfg.seed)
        g = lm.graph
        masks = []
        for c in cs:
            if c.graph.n_edges != g.n_edges:
                raise AcdcError(f"circuit from a {c.graph.n_edges}-edge graph cannot run in "
                                f"model {lm.id!r} ({g.n_edges} edges)")
            masks.append(c.mask())
        values = problem.evaluate([*masks, None, problem.empty_mask()])
        full, empty = values[-2], values[-1]
        for i, v in enumerate(values[:-2]):
            table[i][j] = Faithfulness(v, full, empty).normalized
    return table
