"""What ``acdc trace`` reports about an attribution graph: its size before and after pruning,
its replacement and completeness scores, and the most influential features per layer."""

from __future__ import annotations

import torch

from .prune import node_influence

__all__ = ["summarize", "format_summary"]


def _token(tokenizer, tok: int) -> str:
    """A token's text (its id without a tokenizer)."""
    return tokenizer.decode([tok]) if tokenizer is not None else str(tok)


def summarize(graph, node_threshold: float = 0.8, edge_threshold: float = 0.98,
              tokenizer=None, top: int = 3) -> dict:
    """The report of ``graph`` (a JSON-ready dict): sizes, scores, logit targets, and per
    layer the ``top`` features by influence on the logits (kept by pruning)."""
    pruned = graph.prune(node_threshold, edge_threshold)
    m = len(graph.logit_ids)
    w = torch.zeros(graph.n_nodes, dtype=graph.adjacency_matrix.dtype)
    w[-m:] = graph.logit_probabilities.to(w.dtype)
    inf = node_influence(graph.adjacency_matrix, w)
    replacement, completeness = graph.scores()
    toks = graph.input_tokens.tolist()
    per_layer: dict = {}
    for i in range(graph.n_features):
        if not pruned.node_mask[i]:
            continue
        _, layer, pos, feat = graph.node(i)
        act = float(graph.activation_values[graph.selected_features[i]])
        per_layer.setdefault(layer, []).append(
            {"layer": layer, "pos": pos, "feature": feat, "token": _token(tokenizer, toks[pos]),
             "activation": act, "influence": float(inf[i])})
    tops = {str(layer): sorted(fs, key=lambda f: -f["influence"])[:top]
            for layer, fs in sorted(per_layer.items())}
    return {
        "prompt": graph.input_string, "n_tokens": graph.n_pos,
        "active_features": len(graph.active_features), "feature_nodes": graph.n_features,
        "nodes": graph.n_nodes, "edges": int((graph.adjacency_matrix != 0).sum()),
        "pruned_nodes": int(pruned.node_mask.sum()), "pruned_edges": int(pruned.edge_mask.sum()),
        "pruned_feature_nodes": int(pruned.node_mask[:graph.n_features].sum()),
        "node_threshold": node_threshold, "edge_threshold": edge_threshold,
        "replacement_score": replacement, "completeness_score": completeness,
        "logits": [{"token": t, "id": int(i), "probability": float(p)} for t, i, p in
                   zip(graph.logit_tokens, graph.logit_ids, graph.logit_probabilities)],
        "top_features": tops,
    }


def format_summary(s: dict) -> str:
    """:func:`summarize`'s report as text lines."""
    lines = [f"prompt: {s['prompt']!r} ({s['n_tokens']} tokens)",
             f"graph: {s['nodes']} nodes ({s['feature_nodes']} features of "
             f"{s['active_features']} active), {s['edges']} edges",
             f"pruned (nodes {s['node_threshold']:g}, edges {s['edge_threshold']:g}): "
             f"{s['pruned_nodes']} nodes ({s['pruned_feature_nodes']} features), "
             f"{s['pruned_edges']} edges",
             f"replacement score {s['replacement_score']:.3f}, completeness score "
             f"{s['completeness_score']:.3f}",
             "logits: " + ", ".join(f"{d['token']!r} {d['probability']:.3f}"
                                    for d in s["logits"]),
             "top features by influence (layer: feature@position 'token' activation, influence):"]
    for layer, fs in s["top_features"].items():
        items = ", ".join(f"{f['feature']}@{f['pos']} {f['token']!r} a={f['activation']:.2f} "
                          f"i={f['influence']:.3f}" for f in fs)
        lines.append(f"  layer {layer}: {items}")
    return "\n".join(lines)
