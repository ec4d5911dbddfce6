"""The viewer's attribution-graph page: circuit-tracer's graph JSON, drawn and explored.

    GET  /graph?file=PATH                    the page (static/graph.html, graph.js, graph.css)
    GET  /api/graph?file=PATH                the graph JSON, checked (nodes, links, metadata)
    GET  /api/graph/feature?file=PATH&node=ID   a node's fields and, for a feature, its card
    POST /api/graph/save {file, qParams}     pins, hidden nodes and supernodes into the file
    POST /api/graph/intervene {file, nodes, mode, value}   ablate or clamp features: the top
                                             predictions before and after

The format is circuit-tracer's (``circuit_tracer/frontend/graph_models.py``), which its own
frontend and Neuronpedia open: ``nodes`` (``node_id``, ``feature``, ``layer`` -- ``"E"`` for a
token embedding, the layer number for a feature or an error node, ``n_layers + 1`` for a logit
--, ``ctx_idx``, ``feature_type``, ``influence``, ``activation``, ``clerp``, ``token_prob``,
``is_target_logit``), ``links`` (``source``, ``target``, ``weight``), ``metadata``
(``prompt_tokens``, ``prompt``, ``slug``, ``scan``) and ``qParams`` (``pinnedIds``,
``supernodes`` as ``[name, node_id, ...]`` lists; the page adds ``hiddenIds``, which the other
frontends ignore).

Files are confined like the console's (:mod:`.paths`): the results folder and what ``acdc view
--graph PATH`` (or :meth:`Session.allow`) allowed. Every request passes the server's guard
(Host, Origin, JSON and the page's secret on anything that writes).

Feature cards come from :func:`acdc_engine.features.cards.feature_card` and interventions from
:mod:`acdc_engine.features.interventions`; where those are missing the page shows the node's own
fields, and an intervention answers 501 with one line.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AcdcError

if TYPE_CHECKING:
    from .session import Session

__all__ = ["read_graph", "check_graph", "write_qparams", "node_layer", "GraphPages",
           "NotAvailable", "graph_url"]

FEATURE_TYPES = ("cross layer transcoder", "transcoder", "sae", "feature")
"""``feature_type`` values of dictionary-feature nodes (the rest: embedding, error, logit)."""
QPARAM_KEYS = ("pinnedIds", "supernodes", "hiddenIds", "linkType", "clickedId", "sg_pos")
MAX_GRAPH_BYTES = 200 * 2**20  # a graph file larger than this is refused, not parsed
_FEATURE_ID = re.compile(r"^(-?\d+)_(\d+)_(\d+)$")


class NotAvailable(AcdcError):
    """A part of the page whose engine code is not installed (answered with status 501)."""


# ----- the file ------------------------------------------------------------------------------
def node_layer(node: dict, n_layers: int) -> int:
    """The row a node is drawn in: 0 for a token embedding (``"E"``), ``layer + 1`` for a
    feature or an error node, ``n_layers + 1`` for a logit."""
    layer = str(node.get("layer"))
    if layer == "E" or node.get("feature_type") == "embedding":
        return 0
    if node.get("feature_type") == "logit":
        return n_layers + 1
    return int(layer) + 1


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


def graph_url(server, path: str | Path) -> str:
    """The URL of the graph page for ``path`` on a running ``ViewServer`` (allow the file on
    its session first: :meth:`Session.allow`)."""
    from urllib.parse import urlencode

    q = {"file": str(path)}
    if server.token:
        q["token"] = server.token
    return server.url.split("?")[0] + "graph?" + urlencode(q)


# ----- what the endpoints do -----------------------------------------------------------------
class GraphPages:
    """The graph page's endpoints over one session: files through the session's path guard,
    feature cards and interventions on the session's model."""

    def __init__(self, session: Session):
        self.session = session
        self._transcoders: dict[str, object] = {}

    def path(self, ref: str | None, what: str = "read") -> Path:
        """The allowed real path of a graph reference typed in the page."""
        if not ref:
            raise AcdcError("name a graph file: /graph?file=PATH")
        return self.session.paths.resolve(str(ref), what)

    def graph(self, args: dict) -> dict:
        """``GET /api/graph``: the graph and the name to show."""
        p = self.path(args.get("file"))
        return {"ok": True, "file": str(args.get("file")), "name": p.name,
                "graph": read_graph(p)}

    def save(self, args: dict) -> dict:
        """``POST /api/graph/save``: the page's pins, hidden nodes and supernodes into the
        file."""
        p = self.path(args.get("file"), "write")
        q = write_qparams(p, args.get("qParams"))
        return {"ok": True, "qParams": q,
                "message": f"saved {len(q['pinnedIds'])} pinned, {len(q['hiddenIds'])} hidden, "
                           f"{len(q['supernodes'])} supernode(s) to {p.name}"}

    def _node(self, data: dict, node_id: str) -> dict:
        for n in data["nodes"]:
            if n["node_id"] == node_id:
                return n
        raise AcdcError(f"no node {node_id!r} in the graph")

    def feature(self, args: dict) -> dict:
        """``GET /api/graph/feature``: the node's fields and, for a dictionary feature whose
        dictionary the engine can load, its card (contexts, logit effects, density)."""
        data = read_graph(self.path(args.get("file")))
        node = self._node(data, str(args.get("node", "")))
        out = {"ok": True, "node": node, "card": None, "card_message": ""}
        if node.get("feature_type") not in FEATURE_TYPES:
            return out
        try:
            out["card"] = self._card(data, node)
        except NotAvailable as e:
            out["card_message"] = str(e)
        return out

    def _where(self, node: dict) -> tuple[int, int, int]:
        """(layer, feature index, position) of a feature node, from its ``node_id``."""
        m = _FEATURE_ID.match(str(node["node_id"]))
        if not m:
            raise AcdcError(f"node {node['node_id']!r} is not a feature (layer_feature_pos)")
        return int(m.group(1)), int(m.group(2)), int(m.group(3))

    def check_model(self, data: dict) -> None:
        """Refuse a graph traced on another model than the session's (``metadata.model``)."""
        from ..features.splice import _same_model

        traced = data["metadata"].get("model")
        if traced and not _same_model(str(traced), self.session.model.id):
            raise AcdcError(f"the graph was traced on {traced!r}; this viewer runs "
                            f"{self.session.model.id!r} (start it with acdc view --graph PATH, "
                            "which opens the graph's model)")

    def transcoders(self, data: dict):
        """The dictionaries the graph was traced with: ``metadata.transcoders`` (a path or a
        cached hub id: a circuit-tracer folder or an engine/SAELens file; safetensors only, no
        code runs), else the shipped ones of the session's model (its cross-layer transcoder when
        ``metadata.scan`` names a clt); cached per source."""
        meta = data["metadata"]
        ref = meta.get("transcoders")
        kind = "clt" if "clt" in str(meta.get("scan", "")).lower() else "transcoders"
        key = str(ref or f"{self.session.model.id} {kind}")
        if key not in self._transcoders:
            self._transcoders[key] = _load_transcoders(str(ref)) if ref else \
                _shipped(self.session.model, kind)
        return self._transcoders[key]

    def corpus(self):
        """The texts a card's top contexts come from: the shipped corpus (the one the shipped
        dictionaries were trained on, as ``acdc trace`` and the feature cards use), else the
        session's task prompts."""
        from ..features.cards import default_corpus

        try:
            return default_corpus()
        except AcdcError:
            return [list(r) for r in self.session.data.clean]

    def _card(self, data: dict, node: dict) -> dict:
        try:
            from ..features.cards import feature_card
        except ImportError:
            raise NotAvailable("feature cards are not available "
                               "(acdc_engine.features.cards); the node's own fields are shown") \
                from None
        self.check_model(data)
        layer, index, _ = self._where(node)
        card = feature_card(self.session.model, self.transcoders(data), layer, index,
                            self.corpus())
        return card.to_dict()

    def prompt_ids(self, data: dict):
        """The graph's prompt as token ids [p]: ``metadata.prompt_ids`` when written, else the
        prompt tokenized (BOS first when ``prompt_tokens`` starts with it), which must give
        as many tokens as ``prompt_tokens``."""
        import torch

        meta = data["metadata"]
        n = len(meta["prompt_tokens"])
        if isinstance(meta.get("prompt_ids"), list):
            ids = [int(i) for i in meta["prompt_ids"]]
        else:
            tok = self.session.model.tokenizer
            ids = tok(str(meta.get("prompt", "")), add_special_tokens=False)["input_ids"]
            bos = getattr(tok, "bos_token_id", None)
            if bos is not None and len(ids) == n - 1 and ids[:1] != [bos]:
                ids = [bos, *ids]
        if len(ids) != n:
            raise AcdcError(f"the graph's prompt gives {len(ids)} tokens with "
                            f"{self.session.model.id}'s tokenizer, its prompt_tokens {n}: "
                            "traced with another tokenizer?")
        return torch.tensor(ids)

    def intervene(self, args: dict) -> dict:
        """``POST /api/graph/intervene``: ablate (to 0) or clamp (to ``value``) the chosen
        feature nodes at their positions on the graph's prompt; the top predictions of the
        last position before and after (the model's own logits before: the errors are kept)."""
        try:
            from ..features.interventions import FeatureEdit, intervene
        except ImportError:
            raise NotAvailable("feature interventions are not available "
                               "(acdc_engine.features.interventions is missing)") from None
        data = read_graph(self.path(args.get("file")))
        ids = args.get("nodes") or []
        if not isinstance(ids, list) or not ids:
            raise AcdcError("choose one or more feature nodes to intervene on")
        mode = str(args.get("mode", "ablate"))
        if mode not in ("ablate", "clamp"):
            raise AcdcError(f"unknown intervention {mode!r} (ablate or clamp)")
        value = 0.0 if mode == "ablate" else float(args.get("value", 0.0))
        edits = []
        for node_id in ids:
            node = self._node(data, str(node_id))
            if node.get("feature_type") not in FEATURE_TYPES:
                raise AcdcError(f"{node_id!r} is a {node.get('feature_type')} node; only "
                                "dictionary features can be ablated or clamped")
            layer, index, pos = self._where(node)
            edits.append(FeatureEdit(layer=layer, feature=index, positions=(pos,),
                                     mode="zero" if mode == "ablate" else "clamp",
                                     value=None if mode == "ablate" else value))
        self.check_model(data)
        out = intervene(self.session.model, self.transcoders(data), self.prompt_ids(data),
                        edits, k=int(args.get("k", 5)))
        rows = lambda top: [{"token": t, "prob": p} for t, p in top[0]]  # noqa: E731
        delta = out.delta_logits[0, 0]
        tok = self.session.model.tokenizer
        moved = delta.abs().topk(min(5, delta.numel())).indices.tolist()
        return {"ok": True, "mode": mode, "value": value, "nodes": ids,
                "edits": [e.name for e in edits], "before": rows(out.top_before),
                "after": rows(out.top_after), "changed": bool(out.changed),
                "logit_changes": [{"token": tok.decode([i]) if tok is not None else f"<{i}>",
                                   "delta": float(delta[i])} for i in moved]}


def _load_transcoders(ref: str):
    """Transcoders from a circuit-tracer folder or an engine/SAELens dictionary source."""
    from ..features.formats import load_any, resolve_source

    path = resolve_source(ref)
    try:
        from ..features.circuit_tracer_format import (is_circuit_tracer_folder,
                                                      load_circuit_tracer)
    except ImportError:  # pragma: no cover  (the engine without circuit-tracer's format)
        return load_any(path)
    return load_circuit_tracer(path) if is_circuit_tracer_folder(path) else load_any(path)


def _shipped(model, kind: str):
    """The transcoders shipped for ``model`` (:mod:`acdc_engine.features.shipped`); a model
    without any is :class:`NotAvailable` (no cards, no interventions)."""
    try:
        from ..features.shipped import shipped_transcoders
    except ImportError:  # pragma: no cover  (an engine without shipped dictionaries)
        raise NotAvailable("the graph names no transcoders (metadata.transcoders) and the "
                           "engine ships none") from None
    try:
        return shipped_transcoders(model.id, kind)
    except AcdcError as e:
        raise NotAvailable(f"the graph names no transcoders (metadata.transcoders): {e}") \
            from None


# ----- the routes ------------------------------------------------------------------------------
def graph_routes(session: Session, secret: str) -> list:
    """The Starlette routes of the graph page (the server's guard middleware covers them)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    from .server import STATIC, TOKEN_META, _finite

    pages = GraphPages(session)
    page = (STATIC / "graph.html").read_text(encoding="utf-8")
    if TOKEN_META not in page:
        raise RuntimeError("view/static/graph.html lacks the acdc-token meta tag")
    page = page.replace(TOKEN_META, f'<meta name="acdc-token" content="{html.escape(secret)}">')

    def endpoint(fn):
        async def call(request):
            try:
                body = await request.json() if request.method == "POST" else {}
            except ValueError:
                return JSONResponse({"ok": False, "message": "the request body is not JSON"}, 400)
            args = {**request.query_params, **(body if isinstance(body, dict) else {})}
            args.pop("token", None)
            try:
                return JSONResponse(_finite(await run_in_threadpool(fn, args)))
            except NotAvailable as e:
                return JSONResponse({"ok": False, "message": str(e)}, 501)
            except AcdcError as e:
                return JSONResponse({"ok": False, "message": str(e)}, 400)
            except (KeyError, ValueError, TypeError) as e:
                msg = e.args[0] if e.args else str(e)
                return JSONResponse({"ok": False, "message": f"bad request: {msg}"}, 400)
            except Exception as e:  # noqa: BLE001  (one line for the page)
                return JSONResponse({"ok": False, "message": f"{type(e).__name__}: {e}"}, 500)
        return call

    async def graph_page(request):
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    return [
        Route("/graph", graph_page),
        Route("/api/graph", endpoint(pages.graph)),
        Route("/api/graph/feature", endpoint(pages.feature)),
        Route("/api/graph/save", endpoint(pages.save), methods=["POST"]),
        Route("/api/graph/intervene", endpoint(pages.intervene), methods=["POST"]),
    ]
