"""Pruning an attribution graph, and its replacement and completeness scores.

circuit-tracer's definitions (``circuit_tracer.graph``, 0.5.0), on the dense adjacency ``A``
(rows targets, columns sources; nodes ordered features, errors layer-major, tokens, logits):

* ``normalize``: ``|A|`` with each row summing to 1 (the share of a target's input from each
  source).
* influence: ``w (N + N^2 + ...)`` for the normalized ``N`` and the logit weights ``w`` (the
  logit nodes' probabilities), i.e. ``w ((I - N)^-1 - I)``: how much of the output each node
  feeds, directly or not.
* :func:`prune_graph`: keep the nodes that carry ``node_threshold`` of the total influence
  (tokens and logits always), then the edges carrying ``edge_threshold`` of the edge influence
  (``N_pruned * (influence + w)`` per target row), then drop, until nothing changes, feature and
  error nodes without a kept outgoing edge and features without a kept incoming one.
* :func:`graph_scores`: the replacement score (the tokens' share of the influence reaching the
  output through tokens and errors) and the completeness score (per node, the share of its
  input not from error nodes, averaged with weights ``influence + w``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

__all__ = ["normalize", "influence", "node_influence", "edge_influence", "find_threshold",
           "Pruned", "prune_graph", "graph_scores", "partial_influences"]


def normalize(matrix: torch.Tensor) -> torch.Tensor:
    """``|A|`` with rows summing to 1 (rows of zeros stay zero)."""
    m = matrix.abs()
    return m / m.sum(dim=1, keepdim=True).clamp(min=1e-10)


def influence(A: torch.Tensor, weights: torch.Tensor, max_iter: int = 1000) -> torch.Tensor:
    """``weights @ (A + A^2 + ...)`` by repeated products (``A`` nilpotent: a DAG's)."""
    current = weights @ A
    total = current
    for _ in range(max_iter):
        if not current.any():
            return total
        current = current @ A
        total = total + current
    raise RuntimeError(f"influence did not converge in {max_iter} products (a cycle?)")


def node_influence(adjacency: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Each node's influence on the weighted logits."""
    return influence(normalize(adjacency), weights)


def edge_influence(pruned: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Each edge's influence: its normalized weight times its target's influence (plus the
    target's own logit weight)."""
    n = normalize(pruned)
    inf = influence(n, weights) + weights
    return n * inf[:, None]


def find_threshold(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """The score above which the largest scores add up to ``threshold`` of the total."""
    ordered = torch.sort(scores, descending=True).values
    cumulative = torch.cumsum(ordered, dim=0) / torch.sum(ordered)
    i = int(torch.searchsorted(cumulative, threshold).item())
    return ordered[min(i, len(cumulative) - 1)]


class Pruned(NamedTuple):
    """:func:`prune_graph`'s result: kept nodes, kept edges [target, source], each node's
    cumulative influence score (the share of influence of the nodes at least as influential)."""

    node_mask: torch.Tensor
    edge_mask: torch.Tensor
    cumulative_scores: torch.Tensor


def _weights(adjacency: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
    """The logit weights over all nodes: the logit nodes' probabilities, zero elsewhere."""
    w = torch.zeros(adjacency.shape[0], dtype=adjacency.dtype, device=adjacency.device)
    w[-len(probabilities):] = probabilities.to(adjacency.dtype)
    return w


def prune_graph(adjacency: torch.Tensor, probabilities: torch.Tensor, n_features: int,
                n_tokens: int, node_threshold: float = 0.8,
                edge_threshold: float = 0.98) -> Pruned:
    """Prune the dense ``adjacency`` (``n_features`` feature nodes first, ``n_tokens`` tokens
    before the logits, ``probabilities`` the logits' weights) as circuit-tracer does."""
    for name, t in (("node_threshold", node_threshold), ("edge_threshold", edge_threshold)):
        if not 0.0 <= t <= 1.0:
            raise ValueError(f"{name} must be between 0.0 and 1.0, got {t}")
    n_logits = len(probabilities)
    w = _weights(adjacency, probabilities)
    inf = node_influence(adjacency, w)
    node_mask = inf >= find_threshold(inf, node_threshold)
    node_mask[-n_logits - n_tokens:] = True
    pruned = adjacency.clone()
    pruned[~node_mask] = 0
    pruned[:, ~node_mask] = 0
    scores = edge_influence(pruned, w)
    edge_mask = scores >= find_threshold(scores.flatten(), edge_threshold)
    inner = slice(0, adjacency.shape[0] - n_logits - n_tokens)  # features and errors
    old = node_mask.clone()
    node_mask[inner] &= edge_mask[:, inner].any(0)  # an outgoing edge kept
    node_mask[:n_features] &= edge_mask[:n_features].any(1)  # an incoming edge kept
    while not torch.equal(node_mask, old):
        old[:] = node_mask
        edge_mask[~node_mask] = False
        edge_mask[:, ~node_mask] = False
        node_mask[inner] &= edge_mask[:, inner].any(0)
        node_mask[:n_features] &= edge_mask[:n_features].any(1)
    ordered, order = torch.sort(inf, descending=True)
    cumulative = torch.zeros_like(inf)
    cumulative[order] = torch.cumsum(ordered, dim=0) / torch.sum(ordered)
    return Pruned(node_mask, edge_mask, cumulative)


def graph_scores(adjacency: torch.Tensor, probabilities: torch.Tensor, n_features: int,
                 n_errors: int, n_tokens: int) -> tuple[float, float]:
    """(replacement score, completeness score) of a graph (see the module docstring)."""
    w = _weights(adjacency, probabilities)
    n = normalize(adjacency)
    inf = influence(n, w)
    errors = slice(n_features, n_features + n_errors)
    tokens = slice(errors.stop, errors.stop + n_tokens)
    token_inf, error_inf = inf[tokens].sum(), inf[errors].sum()
    replacement = token_inf / (token_inf + error_inf)
    non_error = 1 - n[:, errors].sum(dim=-1)
    out = inf + w
    completeness = (non_error * out).sum() / out.sum()
    return float(replacement), float(completeness)


def partial_influences(rows: torch.Tensor, probabilities: torch.Tensor,
                       row_nodes: torch.Tensor, max_iter: int = 128) -> torch.Tensor:
    """Influence of every column node from the rows computed so far (``rows`` [r, N], row
    ``i`` is node ``row_nodes[i]``; the logit rows first): circuit-tracer's ranking of the
    features still to visit when the feature nodes are capped."""
    n = rows.abs()
    n = n / n.sum(dim=1, keepdim=True).clamp(min=1e-8)
    total = torch.zeros(rows.shape[1], dtype=rows.dtype)
    prod = torch.zeros(rows.shape[1], dtype=rows.dtype)
    prod[-len(probabilities):] = probabilities.to(rows.dtype)
    for _ in range(max_iter):
        prod = prod[row_nodes] @ n
        if not prod.any():
            return total
        total += prod
    raise RuntimeError("partial influences did not converge")
