"""The comparison of ``trace_vs_circuit_tracer.py``: two saved graphs (the engine's and
circuit-tracer's) compared entry by entry, their graph JSON files, the time/memory table and
the differences in words. Imports only the standard library and torch (lazily)."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["compare", "compare_json", "explain", "table"]


def compare(eng: dict, ct: dict) -> dict:
    """What agrees and by how much (the tolerance: trace_vs_circuit_tracer.py's docstring)."""
    import torch

    eps = torch.finfo(torch.float32).eps
    r = {}
    r["same_tokens"] = torch.equal(eng["input_tokens"].cpu(), ct["input_tokens"].cpu())
    fa, fb = eng["active_features"].long(), ct["active_features"].long()
    r["active_features"] = (len(fa), len(fb))
    r["same_active_features"] = fa.shape == fb.shape and torch.equal(fa, fb)
    if r["same_active_features"]:
        r["activation_max_abs_diff"] = float((eng["activation_values"].float()
                                              - ct["activation_values"].float()).abs().max())
    r["same_selected_features"] = torch.equal(eng["selected_features"].long(),
                                              ct["selected_features"].long())
    r["same_logit_targets"] = torch.equal(eng["logit_token_ids"].long(),
                                          ct["logit_token_ids"].long())
    r["logit_prob_max_abs_diff"] = float((eng["logit_probabilities"].float()
                                          - ct["logit_probabilities"].float()).abs().max()) \
        if r["same_logit_targets"] else None
    A, B = eng["adjacency"].float(), ct["adjacency"].float()
    r["nodes"] = (A.shape[0], B.shape[0])
    comparable = A.shape == B.shape and r["same_selected_features"]
    if comparable:
        r["adjacency_max_abs_diff"] = float((A - B).abs().max())
        r["adjacency_max_abs"] = float(A.abs().max())
        ref = eng.get("float64")
        if ref is not None and ref["adjacency"].shape == A.shape:
            A64 = ref["adjacency"]
            e32 = float((A.double() - A64).abs().max())
            e_ct = float((B.double() - A64).abs().max())
            tol = 8 * e32 + eps * float(A64.abs().max())
            r.update(engine_vs_float64=e32, ct_vs_float64=e_ct, tolerance=tol,
                     adjacency_equal=e_ct <= tol and r["adjacency_max_abs_diff"] <= tol + e32)
        else:
            tol = 64 * eps * float(A.abs().max())  # without a reference: a loose a priori bound
            r.update(tolerance=tol, adjacency_equal=r["adjacency_max_abs_diff"] <= tol)
        bad = ((A - B).abs() > r["tolerance"]).nonzero()
        r["entries_over_tolerance"] = int(len(bad))
        r["first_entries_over_tolerance"] = bad[:5].tolist()
        r["same_pruned_nodes"] = torch.equal(eng["node_mask"].cpu(), ct["node_mask"].cpu())
        r["pruned_nodes"] = (int(eng["node_mask"].sum()), int(ct["node_mask"].sum()))
        r["same_pruned_edges"] = torch.equal(eng["edge_mask"].cpu(), ct["edge_mask"].cpu())
        r["pruned_node_differences"] = int((eng["node_mask"].cpu()
                                            != ct["node_mask"].cpu()).sum())
    else:
        r["adjacency_equal"] = False
    if eng.get("json") and ct.get("json"):
        r.update(compare_json(eng["json"], ct["json"], r.get("tolerance", 1e-5)))
    r["scores_engine"] = (eng["replacement_score"], eng["completeness_score"])
    r["scores_ct"] = (ct["replacement_score"], ct["completeness_score"])
    return r


def compare_json(engine_file: str, ct_file: str, tolerance: float) -> dict:
    """The two graph JSON files (the pruned graphs as circuit-tracer's frontend reads them):
    the same node ids and fields, the same links, weights within ``tolerance``, influences and
    activations within 1e-4."""
    a, b = (json.loads(Path(f).read_text()) for f in (engine_file, ct_file))
    na, nb = ({n["node_id"]: n for n in g["nodes"]} for g in (a, b))
    la, lb = ({(x["source"], x["target"]): x["weight"] for x in g["links"]} for g in (a, b))
    r = {"json_nodes": (len(na), len(nb)), "json_links": (len(la), len(lb)),
         "json_same_node_ids": set(na) == set(nb), "json_same_links": set(la) == set(lb)}
    fields = []
    for key in set(na) & set(nb):
        for f in ("feature", "layer", "ctx_idx", "feature_type", "is_target_logit", "clerp"):
            if na[key].get(f) != nb[key].get(f):
                fields.append(f"{key}.{f}: {na[key].get(f)!r} vs {nb[key].get(f)!r}")
        for f in ("influence", "activation", "token_prob"):
            x, y = na[key].get(f), nb[key].get(f)
            if (x is None) != (y is None) or (x is not None and abs(x - y) > 1e-4):
                fields.append(f"{key}.{f}: {x!r} vs {y!r}")
    r["json_field_differences"] = fields[:10]
    r["json_link_max_abs_diff"] = max((abs(la[k] - lb[k]) for k in set(la) & set(lb)),
                                      default=0.0)
    r["json_equal"] = (r["json_same_node_ids"] and r["json_same_links"] and not fields
                       and r["json_link_max_abs_diff"] <= tolerance)
    return r


def _mb(b) -> str:
    return f"{b / 2**20:.0f}"


def table(fe: dict, fc: dict) -> str:
    """Time and memory side by side."""
    import statistics

    rows = [("", "engine", "circuit-tracer"),
            ("median time of the graph call (s)", f"{statistics.median(fe['times_s']):.2f}",
             f"{statistics.median(fc['times_s']):.2f}"),
            ("all times (s)", " ".join(f"{t:.2f}" for t in fe["times_s"]),
             " ".join(f"{t:.2f}" for t in fc["times_s"])),
            ("peak resident memory (MiB)", _mb(fe["peak_rss_bytes"]), _mb(fc["peak_rss_bytes"])),
            ("rise over memory before the call (MiB)", _mb(fe["peak_rise_bytes"]),
             _mb(fc["peak_rise_bytes"])),
            ("torch threads", str(fe["torch_threads"]), str(fc["torch_threads"]))]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{w[0]}}  {r[1]:>{w[1]}}  {r[2]:>{w[2]}}" for r in rows)


def explain(r: dict) -> list[str]:
    """What differs, in words (empty when everything agrees)."""
    said = []
    if not r["same_tokens"]:
        said.append("the input tokens differ (BOS convention)")
    if not r["same_active_features"]:
        said.append(f"the active features differ ({r['active_features'][0]} engine vs "
                    f"{r['active_features'][1]} circuit-tracer): activation function, position-0 "
                    "zeroing or the transcoders' input hook")
    if not r["same_logit_targets"]:
        said.append("the logit targets differ (top logits up to p=0.95, at most 10)")
    if r.get("same_selected_features") is False:
        said.append("the selected feature nodes differ (max_feature_nodes ranking)")
    if not r.get("adjacency_equal"):
        said.append(f"the adjacency differs beyond float32 rounding: "
                    f"{r.get('entries_over_tolerance')} entries (first [target, source]: "
                    f"{r.get('first_entries_over_tolerance')}), largest difference "
                    f"{r.get('adjacency_max_abs_diff')}")
    if r.get("same_pruned_nodes") is False:
        said.append(f"the pruned node sets differ in {r['pruned_node_differences']} nodes")
    if r.get("same_pruned_edges") is False:
        said.append("the pruned edge sets differ")
    if r.get("json_equal") is False:
        said.append(f"the graph JSON files differ: nodes {r['json_nodes']}, links "
                    f"{r['json_links']}, fields {r['json_field_differences'][:3]}, largest "
                    f"link weight difference {r['json_link_max_abs_diff']:.3g}")
    return said
