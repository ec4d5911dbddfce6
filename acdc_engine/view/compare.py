"""Two models side by side: a base and a fine-tuned model on the same task.

``session.compare_with(other)`` pairs two sessions (each keeps its own interventions and
circuit). The comparison shows, for one head, both models' attention patterns on the same
prompt and their difference (largest changes marked), and for the circuits, which edges only
one of the two keeps::

    a = Session.open("base-model", "ioi"); b = Session.open("finetuned-model", "ioi")
    a.compare_with(b)
    a.command("compare a1.2")
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ..errors import AcdcError

if TYPE_CHECKING:
    from .session import Session

__all__ = ["compare_heads", "compare_circuits", "compare_state"]


def _other(s: Session) -> Session:
    if s.other is None:
        raise AcdcError("no second model to compare with (acdc view --compare MODEL, or "
                        "session.compare_with(other))")
    return s.other


def compare_heads(s: Session, node: str, example: int = 0) -> dict:
    """Head ``node`` (or layer ``a1.*``) of both models on ``example``: patterns of each and
    their difference ``b - a``, with the largest absolute change per head."""
    o = _other(s)
    if s.data.clean[example:example + 1] != o.data.clean[example:example + 1]:
        raise AcdcError(f"example {example} tokenizes differently for {s.model.id} and "
                        f"{o.model.id}; compare models that share a tokenizer")
    if (s.graph.n_layers, s.graph.n_heads) != (o.graph.n_layers, o.graph.n_heads):
        raise AcdcError(f"{s.model.id} and {o.model.id} have different shapes; heads can only "
                        "be compared between models of one architecture")
    a, b = s.inspect.qk(node, example), o.inspect.qk(node, example)
    heads = []
    for ha, hb in zip(a["heads"], b["heads"]):
        pa, pb = torch.tensor(ha["pattern"]), torch.tensor(hb["pattern"])  # [q, k]
        diff = pb - pa
        heads.append({"name": ha["name"], "a": ha["pattern"], "b": hb["pattern"],
                      "diff": diff.tolist(), "max_change": float(diff.abs().max())})
    return {"mode": "compare", "node": node, "example": example, "tokens": a["tokens"],
            "models": [s.model.id, o.model.id], "heads": heads}


def compare_circuits(s: Session) -> dict:
    """Edges kept by both circuits, by only the first, by only the second."""
    o = _other(s)
    ca, cb = s.circuit.current, o.circuit.current
    if ca is None or cb is None:
        raise AcdcError("load or discover a circuit on both models first")
    if ca.graph != cb.graph:
        raise AcdcError("the two circuits come from different graphs")
    a, b = set(ca.edge_names), set(cb.edge_names)
    return {"both": sorted(a & b), "only_a": sorted(a - b), "only_b": sorted(b - a),
            "models": [s.model.id, o.model.id]}


def compare_state(s: Session) -> dict | None:
    """The second model's name, summary and circuit, for the page."""
    o = s.other
    if o is None:
        return None
    return {"model": o.model.id, "summary": o.summary.as_dict(), "circuit": o.circuit.info(),
            "interventions": o.interventions}
