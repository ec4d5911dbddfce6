"""circuit-tracer's graph JSON (its frontend and Neuronpedia read it), and a networkx view.

The file ``<slug>.json`` holds the *pruned* graph as ``circuit_tracer.utils.create_graph_files``
(0.5.0) writes it: ``metadata`` (slug, scan, transcoder_list, prompt_tokens, prompt,
node_threshold, schema_version), ``qParams`` (pinnedIds, supernodes, linkType, clickedId,
sg_pos), ``nodes`` and ``links`` (source, target, weight). Node ids: a feature
``{layer}_{feature}_{pos}``, an error ``0_{layer}_{pos}``, a token ``E_{token_id}_{pos}``, a
logit ``{n_layers + 1}_{vocab_id}_{pos}``; ``graph-metadata.json`` beside it lists the graphs
of the folder. Only nodes with a kept edge are written (tokens and logits always).
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["graph_nodes_json", "write_graph_json", "to_networkx", "node_name"]


def _cantor(x: int, y: int) -> int:
    """circuit-tracer's unique integer of a (layer, feature) pair."""
    return (x + y) * (x + y + 1) // 2 + y


def _node(graph, i: int, influence: float) -> dict:
    """Node ``i`` of ``graph`` as a circuit-tracer frontend node."""
    kind, *rest = graph.node(i)
    base = {"token_prob": 0.0, "is_target_logit": False, "run_idx": 0, "reverse_ctx_idx": 0,
            "clerp": "", "influence": influence, "activation": None}
    if kind == "feature":
        layer, pos, feat = rest
        act = float(graph.activation_values[graph.selected_features[i]])
        return {**base, "node_id": f"{layer}_{feat}_{pos}", "feature": _cantor(layer, feat),
                "layer": str(layer), "ctx_idx": pos, "feature_type": "cross layer transcoder",
                "jsNodeId": f"{layer}_{feat}-0", "activation": act}
    if kind == "error":
        layer, pos = rest
        return {**base, "node_id": f"0_{layer}_{pos}", "feature": -1, "layer": str(layer),
                "ctx_idx": pos, "feature_type": "mlp reconstruction error",
                "jsNodeId": f"{layer}_{pos}-0"}
    if kind == "token":
        pos, tok = rest
        return {**base, "node_id": f"E_{tok}_{pos}", "feature": pos, "layer": "E",
                "ctx_idx": pos, "feature_type": "embedding", "jsNodeId": f"E_{tok}-{pos}"}
    (vocab,) = rest
    j = i - (graph.n_nodes - len(graph.logit_ids))
    prob = float(graph.logit_probabilities[j])
    layer, pos = str(graph.n_layers + 1), graph.n_pos - 1
    return {**base, "node_id": f"{layer}_{vocab}_{pos}", "feature": vocab, "layer": layer,
            "ctx_idx": pos, "feature_type": "logit", "token_prob": prob,
            "is_target_logit": j == 0, "jsNodeId": f"L_{vocab}-{pos}",
            "clerp": f'Output "{graph.logit_tokens[j]}" (p={prob:.3f})', "influence": None}


def _pruned(graph, node_threshold: float, edge_threshold: float):
    """({node index: frontend node}, [(source index, target index, weight)]) of the pruned
    graph: the kept edges between kept nodes, and the nodes they touch (tokens and logits
    always)."""
    pruned = graph.prune(node_threshold, edge_threshold)
    cumulative = pruned.cumulative_scores.tolist()
    nodes = {i: _node(graph, i, cumulative[i]) for i in pruned.node_mask.nonzero()[:, 0].tolist()}
    dst, src = pruned.edge_mask.nonzero(as_tuple=True)
    weights = graph.adjacency_matrix[dst, src].tolist()
    edges = [(s, d, w) for s, d, w in zip(src.tolist(), dst.tolist(), weights)
             if s in nodes and d in nodes]
    used = {x for s, d, _ in edges for x in (s, d)}
    kept = {i: n for i, n in nodes.items()
            if i in used or n["feature_type"] in ("embedding", "logit")}
    return kept, edges


def graph_nodes_json(graph, node_threshold: float = 0.8, edge_threshold: float = 0.98):
    """(nodes, links) of the pruned graph, as circuit-tracer writes them."""
    nodes, edges = _pruned(graph, node_threshold, edge_threshold)
    links = [{"source": nodes[s]["node_id"], "target": nodes[d]["node_id"], "weight": w}
             for s, d, w in edges]
    return list(nodes.values()), links


def write_graph_json(graph, path, slug: str = "graph", node_threshold: float = 0.8,
                     edge_threshold: float = 0.98, tokenizer=None,
                     transcoders: str | None = None) -> Path:
    """Write ``<path>/<slug>.json`` and update ``<path>/graph-metadata.json``; the JSON's path.
    Besides circuit-tracer's fields the metadata names the ``model`` and, when given, the
    ``transcoders`` (a path or cached hub id) the graph was traced with, so ``acdc view
    --graph`` reopens both (circuit-tracer's readers ignore the extra keys)."""
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    nodes, links = graph_nodes_json(graph, node_threshold, edge_threshold)
    toks = graph.input_tokens.tolist()
    words = [tokenizer.decode([t]) for t in toks] if tokenizer is not None else \
        [str(t) for t in toks]
    meta = {"slug": slug, "scan": graph.scan or graph.model or "acdc-engine",
            "transcoder_list": [], "prompt_tokens": words, "prompt": graph.input_string,
            "node_threshold": node_threshold, "schema_version": 1}
    if graph.model:
        meta["model"] = graph.model
    if transcoders:
        meta["transcoders"] = str(transcoders)
    qparams = {"pinnedIds": [], "supernodes": [], "linkType": "both", "clickedId": "",
               "sg_pos": ""}
    file = out / f"{slug}.json"
    file.write_text(json.dumps({"metadata": meta, "qParams": qparams, "nodes": nodes,
                                "links": links}, indent=2))
    index = out / "graph-metadata.json"
    listing = json.loads(index.read_text()) if index.exists() else {"graphs": []}
    listing["graphs"] = [g for g in listing["graphs"] if g.get("slug") != slug] + [meta]
    index.write_text(json.dumps(listing, indent=2))
    return file


def node_name(graph, i: int) -> str:
    """A unique readable name of node ``i``: ``f{layer}.{feature}@{pos}``, ``err{layer}@{pos}``,
    ``tok{pos}``, ``logit{vocab_id}`` (circuit-tracer's ids can collide: a layer-0 feature's
    and an error node's)."""
    kind, *rest = graph.node(i)
    if kind == "feature":
        return f"f{rest[0]}.{rest[2]}@{rest[1]}"
    if kind == "error":
        return f"err{rest[0]}@{rest[1]}"
    return f"tok{rest[0]}" if kind == "token" else f"logit{rest[0]}"


def to_networkx(graph, node_threshold: float = 0.8, edge_threshold: float = 0.98):
    """The pruned graph as a networkx ``MultiDiGraph`` shaped like a component circuit's
    (:meth:`acdc_engine.circuit.Circuit.to_networkx`): nodes by :func:`node_name` with
    circuit-tracer's node fields, edges ``(source, target, key="direct")`` with ``score`` and
    ``weight`` (the direct effect), ``kind`` and ``name``; graph attributes: model, prompt,
    scan, thresholds, the replacement and completeness scores."""
    import networkx as nx

    nodes, edges = _pruned(graph, node_threshold, edge_threshold)
    replacement, completeness = graph.scores()
    g = nx.MultiDiGraph(model=graph.model, prompt=graph.input_string, scan=graph.scan,
                        granularity="features", node_threshold=node_threshold,
                        edge_threshold=edge_threshold, replacement_score=replacement,
                        completeness_score=completeness)
    for i, n in nodes.items():
        g.add_node(node_name(graph, i), **n)
    for s, d, w in edges:
        a, b = node_name(graph, s), node_name(graph, d)
        g.add_edge(a, b, key="direct", score=w, weight=w, kind="direct", name=f"{a}->{b}")
    return g
