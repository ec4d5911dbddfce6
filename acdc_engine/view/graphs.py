"""The viewer's attribution-graph page: circuit-tracer's graph JSON, drawn and explored.

    GET  /graph?file=PATH                    the page (static/graph.html, graph.js, graph.css)
    GET  /api/graph?file=PATH                the graph JSON, checked (nodes, links, metadata)
    GET  /api/graph/feature?file=PATH&node=ID   a node's fields and, for a feature, its card
    POST /api/graph/save {file, qParams}     pins, hidden nodes and supernodes into the file
    POST /api/graph/intervene {file, nodes, mode, value}   ablate or clamp features: the top
                                             predictions before and after

The format is circuit-tracer's graph JSON (:mod:`.graph_file` reads, checks and saves it), which
its own frontend and Neuronpedia open.

Files are confined like the console's (:mod:`.paths`): the results folder and what ``acdc view
--graph PATH`` (or :meth:`Session.allow`) allowed. Every request passes the server's guard
(Host, Origin, JSON and the page's secret on anything that writes).

Feature cards come from :func:`acdc_engine.features.cards.feature_card` and interventions from
:mod:`acdc_engine.features.interventions`; where those are missing the page shows the node's own
fields, and an intervention answers 501 with one line.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AcdcError
from .graph_file import check_graph, feature_where, is_feature, read_graph, write_qparams

if TYPE_CHECKING:
    from .session import Session

__all__ = ["read_graph", "check_graph", "write_qparams", "GraphPages", "NotAvailable",
           "graph_url", "graph_routes"]

STATIC = Path(__file__).parent / "static"
TOKEN_META = '<meta name="acdc-token" content="">'  # as server.TOKEN_META: the page's secret
ACTIVATION_RTOL = 1e-3
"""How closely the transcoders' activations on the graph's prompt must match the graph's
feature nodes for the page to use them (float32 traces agree to ~1e-6)."""
MAX_CHECKED = 64  # feature nodes compared when matching transcoders to a graph


class NotAvailable(AcdcError):
    """What the page cannot do for this graph (no engine code, no matching transcoders):
    answered with status 501 and the reason."""

    status = 501


def graph_url(server, path: str | Path, transcoders: str | Path | None = None) -> str:
    """The URL of the graph page for ``path`` on a running ``ViewServer`` (allow the file, and
    ``transcoders`` when given, on its session first: :meth:`Session.allow`)."""
    from urllib.parse import urlencode

    q = {"file": str(path)}
    if transcoders:
        q["transcoders"] = str(transcoders)
    if server.token:
        q["token"] = server.token
    return server.url.split("?")[0] + "graph?" + urlencode(q)


# ----- what the endpoints do -----------------------------------------------------------------
class GraphPages:
    """The graph page's endpoints over one session: files through the session's path guard,
    feature cards and interventions on the session's model."""

    def __init__(self, session: Session):
        self.session = session
        self._transcoders: dict[tuple, object] = {}  # (kind, source) -> transcoders or None
        self._fits_seen: dict[tuple, bool] = {}  # (source, the graph's features) -> match

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
        if not is_feature(node):
            return out
        try:
            out["card"] = self._card(data, node, args.get("transcoders"))
        except NotAvailable as e:
            out["card_message"] = str(e)
        return out

    def prompt_ids(self, data: dict):
        """The graph's prompt as token ids [p]: ``metadata.prompt_ids`` when written, else the
        prompt tokenized as ``acdc trace`` does (a special token first); it must give as many
        tokens as ``prompt_tokens``."""
        import torch

        from ..features.graph_nodes import prompt_ids

        meta = data["metadata"]
        n = len(meta["prompt_tokens"])
        if isinstance(meta.get("prompt_ids"), list):
            ids = torch.tensor([int(i) for i in meta["prompt_ids"]])
        else:
            m = self.session.model
            ids = prompt_ids(m.adapter, m.tokenizer, str(meta.get("prompt", ""))).cpu()
        if len(ids) != n:
            raise AcdcError(f"the graph's prompt gives {len(ids)} tokens with "
                            f"{self.session.model.id}'s tokenizer, its prompt_tokens {n}: "
                            "traced on another model?")
        return ids

    def transcoders(self, data: dict, ref: str | None = None):
        """The dictionaries the graph was traced with: ``ref`` (given to the page, e.g. by
        ``acdc view --transcoders``; a path where the page may read), else the graph's
        ``metadata.transcoders`` (a path or a cached hub id), else those shipped with the
        session's model (per-layer, then cross-layer) -- circuit-tracer folders or engine/
        SAELens files, safetensors only, no code runs -- and only if their activations on the
        graph's prompt equal the graph's feature nodes' (a graph of another model or dictionary
        is refused, not misread)."""
        meta = data["metadata"]
        if ref:
            sources = [("path", str(self.session.paths.resolve(str(ref))))]
        elif meta.get("transcoders"):
            sources = [("path", str(meta["transcoders"]))]
        else:
            sources = [("shipped", "transcoders"), ("shipped", "clt")]
        seen = (meta.get("prompt"), tuple((n["node_id"], n.get("activation"))
                                          for n in data["nodes"] if is_feature(n)))
        for source in sources:
            if source not in self._transcoders:
                self._transcoders[source] = _load_transcoders(source[1]) \
                    if source[0] == "path" else _shipped(self.session.model, source[1])
            tc = self._transcoders[source]
            if tc is not None and (source, seen) not in self._fits_seen:
                self._fits_seen[(source, seen)] = self._fits(data, tc, self.prompt_ids(data))
            if tc is not None and self._fits_seen[(source, seen)]:
                return tc
        which = f"the transcoders {sources[0][1]}" if sources[0][0] == "path" else \
            f"the transcoders shipped with {self.session.model.id}"
        raise NotAvailable(f"{which} do not give the graph's feature activations on its "
                           "prompt: the graph was traced with other transcoders or another "
                           "model (acdc view --transcoders names them)")

    def _fits(self, data: dict, tc, ids) -> bool:
        """Do ``tc``'s activations on ``ids`` equal the graph's feature nodes' (relative
        :data:`ACTIVATION_RTOL`)?"""
        import torch

        from ..features.splice import spliced_run

        feats = [n for n in data["nodes"] if is_feature(n)
                 and isinstance(n.get("activation"), (int, float))][:MAX_CHECKED]
        try:
            with torch.no_grad():
                acts = spliced_run(self.session.model.adapter, ids[None], tc).acts
        except AcdcError:
            return False  # another model's transcoders (layers, width)
        for n in feats:
            layer, f, pos = feature_where(n)
            if layer >= len(acts) or f >= acts[layer].shape[-1]:
                return False
            got, want = float(acts[layer][0, pos, f]), float(n["activation"])
            if not abs(got - want) <= ACTIVATION_RTOL * max(1.0, abs(want)):
                return False
        return True

    def corpus(self):
        """The texts a card's top contexts come from: the shipped corpus (the one the shipped
        dictionaries were trained on, as the feature cards use), else the session's task
        prompts."""
        from ..features.cards import default_corpus

        try:
            return default_corpus()
        except AcdcError:
            return [list(r) for r in self.session.data.clean]

    def _card(self, data: dict, node: dict, ref: str | None = None) -> dict:
        try:
            from ..features.cards import feature_card
        except ImportError:
            raise NotAvailable("feature cards are not available "
                               "(acdc_engine.features.cards); the node's own fields are shown") \
                from None
        layer, index, _ = feature_where(node)
        # the session's lock: a spliced run hooks the model's MLPs, so no other run (another
        # request, the main page, a notebook) may use the model meanwhile
        with self.session.lock, self.session.busy(f"the card of {node['node_id']}"):
            card = feature_card(self.session.model, self.transcoders(data, ref), layer, index,
                                self.corpus())
        return card.to_dict()

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
            layer, index, pos = feature_where(self._node(data, str(node_id)))
            edits.append(FeatureEdit(layer=layer, feature=index, positions=(pos,),
                                     mode="zero" if mode == "ablate" else "clamp",
                                     value=None if mode == "ablate" else value))
        with self.session.lock, self.session.busy(f"{mode} {', '.join(map(str, ids))}"):
            out = intervene(self.session.model, self.transcoders(data, args.get("transcoders")),
                            self.prompt_ids(data), edits, k=int(args.get("k", 5)))
        rows = lambda top: [{"token": t, "prob": p} for t, p in top[0]]  # noqa: E731
        delta = out.delta_logits[0, 0]
        tok = self.session.model.tokenizer
        moved = delta.abs().topk(min(5, delta.numel())).indices.tolist()
        return {"ok": True, "mode": mode, "value": value, "nodes": ids,
                "edits": [e.name for e in edits], "before": rows(out.top_before),
                "after": rows(out.top_after),
                "changed": out.top_before[0][0][0] != out.top_after[0][0][0],  # the top token
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
    """The dictionary of ``kind`` shipped with ``model`` (:mod:`acdc_engine.features.shipped`),
    or None; a model with none at all is :class:`NotAvailable` (no cards, no interventions)."""
    try:
        from ..features.shipped import SHIPPED, shipped_transcoders
    except ImportError:  # pragma: no cover  (an engine without shipped dictionaries)
        raise NotAvailable("the graph names no transcoders (metadata.transcoders) and the "
                           "engine ships none") from None
    try:
        return shipped_transcoders(model.id, kind)
    except AcdcError as e:
        if Path(str(model.id).rstrip("/")).name in SHIPPED:
            return None  # this kind is missing; the other may do
        raise NotAvailable(f"the graph names no transcoders (metadata.transcoders): {e}") \
            from None


# ----- the routes ------------------------------------------------------------------------------
def graph_routes(session: Session, secret: str, guarded) -> list:
    """The Starlette routes of the graph page; ``secret`` goes into the page, ``guarded`` is
    the server's wrapper of an endpoint (arguments from the query and JSON body, one-line
    errors, :class:`NotAvailable` as 501). The server's guard middleware covers them all."""
    from starlette.responses import HTMLResponse
    from starlette.routing import Route

    pages = GraphPages(session)
    page = (STATIC / "graph.html").read_text(encoding="utf-8")
    if TOKEN_META not in page:
        raise RuntimeError("view/static/graph.html lacks the acdc-token meta tag")
    page = page.replace(TOKEN_META, f'<meta name="acdc-token" content="{html.escape(secret)}">')

    async def graph_page(request):
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    return [
        Route("/graph", graph_page),
        Route("/api/graph", guarded(pages.graph)),
        Route("/api/graph/feature", guarded(pages.feature)),
        Route("/api/graph/save", guarded(pages.save), methods=["POST"]),
        Route("/api/graph/intervene", guarded(pages.intervene), methods=["POST"]),
    ]
