"""circuit-tracer's graph JSON as the viewer's graph page reads and saves it.

The format is ``circuit_tracer/frontend/graph_models.py``'s (0.5.0), which its own frontend
and Neuronpedia open: ``nodes`` (``node_id``, ``feature``, ``layer`` -- ``"E"`` for a token
embedding, the layer number for a feature or an error node, ``n_layers + 1`` for a logit --,
``ctx_idx``, ``feature_type``, ``influence``, ``activation``, ``clerp``, ``token_prob``,
``is_target_logit``), ``links`` (``source``, ``target``, ``weight``), ``metadata``
(``prompt_tokens``, ``prompt``, ``slug``, ``scan``) and ``qParams`` (``pinnedIds``,
``supernodes`` as ``[name, node_id, ...]`` lists; the page adds ``hiddenIds``, which the other
frontends ignore). Node ids: a feature ``{layer}_{feature}_{pos}``, an error
``0_{layer}_{pos}``, a token ``E_{token_id}_{pos}``, a logit ``{n_layers + 1}_{vocab}_{pos}``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ..errors import AcdcError

__all__ = ["FEATURE_TYPES", "check_graph", "read_graph", "write_qparams", "feature_where",
           "is_feature"]

FEATURE_TYPES = ("cross layer transcoder", "transcoder", "sae", "feature")
"""``feature_type`` values of dictionary-feature nodes (the rest: embedding, error, logit)."""
QPARAM_KEYS = ("pinnedIds", "supernodes", "hiddenIds", "linkType", "clickedId", "sg_pos")
MAX_GRAPH_BYTES = 200 * 2**20  # a graph file larger than this is refused, not parsed
_FEATURE_ID = re.compile(r"^(\d+)_(\d+)_(\d+)$")


# ----- the file ------------------------------------------------------------------------------
def check_graph(data, where: str) -> dict:
    """``data`` if it is a graph in circuit-tracer's format, else a one-line
    :class:`AcdcError` naming ``where`` and the first thing wrong."""
    if not isinstance(data, dict):
        raise AcdcError(f"{where}: not a graph JSON (an object with nodes, links, metadata)")
    for key, kind in (("nodes", list), ("links", list), ("metadata", dict)):
        if not isinstance(data.get(key), kind):
            raise AcdcError(f"{where}: not circuit-tracer's graph JSON: no {key!r} "
                            f"{'list' if kind is list else 'object'}")
    if not isinstance(data["metadata"].get("prompt_tokens"), list):
        raise AcdcError(f"{where}: metadata has no prompt_tokens list")
    n_tokens = len(data["metadata"]["prompt_tokens"])
    ids = set()
    for i, n in enumerate(data["nodes"]):
        if not isinstance(n, dict) or not all(k in n for k in ("node_id", "layer", "ctx_idx",
                                                               "feature_type")):
            raise AcdcError(f"{where}: node {i} lacks node_id, layer, ctx_idx or feature_type")
        if not isinstance(n["ctx_idx"], int) or not 0 <= n["ctx_idx"] < max(n_tokens, 1):
            raise AcdcError(f"{where}: node {n['node_id']!r} has ctx_idx {n['ctx_idx']!r}, "
                            f"outside the prompt's {n_tokens} tokens")
        layer = str(n["layer"])
        if layer != "E" and not layer.lstrip("-").isdigit():
            raise AcdcError(f"{where}: node {n['node_id']!r} has layer {n['layer']!r} (a "
                            "number or 'E')")
        ids.add(n["node_id"])
    for i, link in enumerate(data["links"]):
        if not isinstance(link, dict) or not all(k in link for k in ("source", "target",
                                                                     "weight")):
            raise AcdcError(f"{where}: link {i} lacks source, target or weight")
        for end in ("source", "target"):
            if link[end] not in ids:
                raise AcdcError(f"{where}: link {i}'s {end} {link[end]!r} is not a node")
    return data


def read_graph(path: str | Path) -> dict:
    """The graph JSON at ``path``, checked (:func:`check_graph`); one-line errors name the
    file."""
    p = Path(path)
    try:
        if p.stat().st_size > MAX_GRAPH_BYTES:
            raise AcdcError(f"{p}: larger than {MAX_GRAPH_BYTES >> 20} MB; prune the graph")
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AcdcError(f"no graph file {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise AcdcError(f"cannot read the graph {p}: {getattr(e, 'strerror', None) or e}") \
            from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise AcdcError(f"{p}: not JSON ({e})") from None
    return check_graph(data, str(p))


def _clean_qparams(q, ids: set[str]) -> dict:
    """The page's ``qParams``, checked: pins, hidden ids and supernode members must be nodes."""
    if not isinstance(q, dict):
        raise AcdcError("qParams must be an object")
    out = {k: q[k] for k in QPARAM_KEYS if k in q}
    for key in ("pinnedIds", "hiddenIds"):
        vals = out.setdefault(key, [])
        if not isinstance(vals, list) or any(v not in ids for v in vals):
            raise AcdcError(f"qParams.{key} must list node ids of the graph")
    sns = out.setdefault("supernodes", [])
    for sn in sns:
        if not (isinstance(sn, list) and len(sn) >= 2 and isinstance(sn[0], str)
                and sn[0].strip() and all(v in ids for v in sn[1:])):
            raise AcdcError("each supernode is [name, node_id, ...] with node ids of the graph")
    for key in ("linkType", "clickedId", "sg_pos"):
        out[key] = str(out.get(key, "both" if key == "linkType" else ""))
    return out


def write_qparams(path: str | Path, qparams: dict) -> dict:
    """Save ``qparams`` (pins, hidden nodes, supernodes) into the graph JSON at ``path``,
    keeping everything else; returns the checked ``qParams``."""
    data = read_graph(path)
    q = _clean_qparams(qparams, {n["node_id"] for n in data["nodes"]})
    data["qParams"] = q
    tmp = Path(f"{path}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)
    return q


def is_feature(node: dict) -> bool:
    """Whether ``node`` is a dictionary feature (not a token, an error node or a logit)."""
    return node.get("feature_type") in FEATURE_TYPES


def feature_where(node: dict) -> tuple[int, int, int]:
    """``(layer, feature, position)`` of a feature node, from its ``node_id``."""
    m = _FEATURE_ID.match(str(node["node_id"]))
    if not is_feature(node) or not m:
        raise AcdcError(f"{node['node_id']!r} is a {node.get('feature_type')} node; only "
                        "dictionary features ({layer}_{feature}_{pos}) can be ablated or "
                        "clamped")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))
