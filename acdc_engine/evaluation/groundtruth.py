"""ROC AUC of edge scores against a ground-truth circuit.

A method's scores rank the edges; a ground-truth circuit says which edges are really used.
Treating ``|score|`` as a classifier score for "this edge is in the circuit", the ROC AUC is
the probability that a random ground-truth edge outranks a random other edge (ties count one
half; the Mann-Whitney form, computed from average ranks). 1 is a perfect ranking, 0.5 is
chance. NaN scores (edges a method did not score) rank lowest.

Nodes: a node's score is the largest ``|score|`` of the edges incident to it (into or out of
it, any input kind); the ground-truth nodes are the endpoints of the ground-truth edges. The
``input`` and ``logits`` nodes are in every circuit and every ground truth, so they are left
out of the node ROC (they would only be two certain positives).

A ground-truth file is JSON: a list of edge names, an object with an ``edges`` list (the
shipped models' ``ground_truth.json``; other keys are ignored), or a circuit file
(``circuit.json``, node-link with an edge attribute ``name``). A model has a ground truth when
its loader put a path in ``LoadedModel.info["ground_truth"]`` or its directory holds a
``ground_truth.json``; :func:`ground_truth_for` finds it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import AcdcError
from ..graph import Graph, parse_edge

__all__ = ["GroundTruth", "load_ground_truth", "ground_truth_for", "roc_auc", "node_scores",
           "edge_labels", "evaluate_ground_truth"]

#: Nodes in every circuit, left out of the node ROC.
OUTER = frozenset({"input", "logits"})


@dataclass(frozen=True)
class GroundTruth:
    """The edges of a ground-truth circuit (names as in :class:`~acdc_engine.graph.Graph`)."""

    edges: tuple[str, ...]
    source: str = ""


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Read a ground-truth file (an edge list, ``{"edges": [...]}`` or a circuit.json)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise AcdcError(f"cannot read ground truth {path}: {e}") from None
    if isinstance(data, dict) and isinstance(data.get("edges"), list):
        items = data["edges"]
        # node-link circuit files list edges as objects with a "name"
        edges = [e["name"] if isinstance(e, dict) else e for e in items]
    elif isinstance(data, list):
        edges = data
    else:
        raise AcdcError(f"ground truth {path} is neither a list of edge names nor an object "
                        "with an 'edges' list")
    if not all(isinstance(e, str) for e in edges):
        raise AcdcError(f"ground truth {path}: every edge must be a name like 'a0.1->a1.0<k>'")
    return GroundTruth(tuple(e.strip() for e in edges), str(path))


def ground_truth_for(model) -> GroundTruth | None:
    """The ground truth a loaded model comes with, or None."""
    path = (getattr(model, "info", None) or {}).get("ground_truth")
    if path is None:
        name = getattr(getattr(model.hf, "config", None), "_name_or_path", "") or ""
        candidate = Path(name) / "ground_truth.json" if name else None
        if candidate is None or not candidate.is_file():
            return None
        path = candidate
    return load_ground_truth(path)


def roc_auc(scores, labels) -> float:
    """ROC AUC of ``scores`` (higher = more likely positive) for bool ``labels``.

    Average ranks make tied scores count one half. NaN when either class is empty.
    """
    from scipy.stats import rankdata

    s = torch.as_tensor(scores, dtype=torch.float64).flatten()
    y = torch.as_tensor(labels, dtype=torch.bool).flatten()
    if s.shape != y.shape:
        raise ValueError(f"{s.numel()} scores but {y.numel()} labels")
    s = torch.nan_to_num(s, nan=-math.inf)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = torch.from_numpy(rankdata(s.numpy()))  # 1-based, ties averaged
    u = float(ranks[y].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def _endpoints(name: str) -> tuple[str, str]:
    try:
        src, dst, _ = parse_edge(name)
    except ValueError as e:
        raise AcdcError(str(e)) from None
    return src, dst


def edge_labels(edge_names: list[str], gt: GroundTruth) -> torch.Tensor:
    """Bool per edge: in the ground truth (every ground-truth edge must be among the names)."""
    known = set(edge_names)
    unknown = [e for e in gt.edges if e not in known]
    if unknown:
        raise AcdcError(f"ground truth {gt.source} names {len(unknown)} edge(s) the scored "
                        f"model does not have: {unknown[:5]} (of {len(edge_names)} edges)")
    if not gt.edges:
        raise AcdcError(f"ground truth {gt.source} has no edges")
    names = set(gt.edges)
    return torch.tensor([e in names for e in edge_names])


def node_scores(edge_names: list[str], scores: torch.Tensor) -> dict[str, float]:
    """Inner node (heads and MLPs) -> max ``|score|`` over the edges into or out of it."""
    s = torch.nan_to_num(torch.as_tensor(scores).detach().double().abs().cpu(), nan=-math.inf)
    best: dict[str, float] = {}
    for name, v in zip(edge_names, s.tolist()):
        for n in _endpoints(name):
            if n not in OUTER:
                best[n] = max(best.get(n, -math.inf), v)
    return best


def evaluate_ground_truth(edges: Graph | list[str], scores: torch.Tensor,
                          gt: GroundTruth) -> dict:
    """Edge and node ROC AUC of ``scores`` (one per edge of ``edges``, a graph or the edge
    names in score order) against ``gt``: ``{"edge_roc_auc", "node_roc_auc", "gt_edges",
    "gt_nodes", "ground_truth"}``."""
    names = [e.name for e in edges.edges] if isinstance(edges, Graph) else list(edges)
    scores = torch.as_tensor(scores).detach().double().cpu()
    if scores.shape != (len(names),):
        raise AcdcError(f"expected {len(names)} scores, one per edge, got {tuple(scores.shape)}")
    e_lab = edge_labels(names, gt)
    by_node = node_scores(names, scores)
    gt_nodes = {n for e in gt.edges for n in _endpoints(e)} - OUTER
    nodes = list(by_node)
    n_lab = torch.tensor([n in gt_nodes for n in nodes])
    return {
        "edge_roc_auc": roc_auc(scores.abs(), e_lab),
        "node_roc_auc": roc_auc(torch.tensor([by_node[n] for n in nodes]), n_lab),
        "gt_edges": int(e_lab.sum()),
        "gt_nodes": int(n_lab.sum()),
        "ground_truth": gt.source,
    }
