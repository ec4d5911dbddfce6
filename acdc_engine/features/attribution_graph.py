"""Attribution graphs: the direct linear effects between features for one prompt.

:func:`trace` follows circuit-tracer (Ameisen et al. 2025; ``circuit_tracer.attribute``,
0.5.0) and its conventions: a special token prepended; features and errors at position 0
zeroed; the MLPs replaced by transcoders, attention patterns and norm scales frozen (the
local replacement model, :mod:`acdc_engine.features.splice`); nodes ordered active features
(layer, pos, feature), error nodes layer-major (layer, pos), token embeddings (pos), logits
(the top logits up to cumulative probability 0.95, at most 10, each the logit minus the mean
logit); a dense adjacency, rows targets and columns sources, filled by batched backward
passes (:mod:`acdc_engine.features.graph_backward`). With ``max_feature_nodes`` below the
number of active features, the features are visited in order of their influence on the
logits estimated from the rows computed so far (circuit-tracer's ranking), and only the
visited ones become nodes.

:class:`AttributionGraph` holds the full graph (:meth:`~AttributionGraph.save` /
:meth:`~AttributionGraph.load`); :meth:`~AttributionGraph.prune` and
:meth:`~AttributionGraph.scores` apply :mod:`acdc_engine.features.prune`;
:meth:`~AttributionGraph.to_circuit_tracer_json` writes the pruned graph in circuit-tracer's
graph JSON (:mod:`acdc_engine.features.graph_json`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from ..errors import AcdcError
from .graph_backward import Attribution
from .graph_nodes import logit_targets, prompt_ids
from .prune import Pruned, graph_scores, partial_influences, prune_graph
from .splice import adapter_of, check_transcoders

__all__ = ["AttributionGraph", "trace"]


@dataclass
class AttributionGraph:
    """One prompt's attribution graph (circuit-tracer's ``Graph`` fields, plus the targets'
    values and bias terms).

    input_string, input_tokens [p]; active_features [k, 3] (layer, pos, feature);
    activation_values [k]; selected_features [s] (indices into active_features: the feature
    nodes); adjacency_matrix [N, N] (rows targets, columns sources; N = s + (L + 1) p + m);
    logit_tokens (texts), logit_ids [m], logit_probabilities [m]; n_layers; scan (what names
    the transcoders); model (the model's id); node_inputs [N] (each feature node's
    pre-activation, each logit node's logit minus the mean logit; 0 elsewhere); node_bias [N]
    (the part of it no node explains; 0 elsewhere).
    """

    input_string: str
    input_tokens: torch.Tensor
    active_features: torch.Tensor
    activation_values: torch.Tensor
    selected_features: torch.Tensor
    adjacency_matrix: torch.Tensor
    logit_tokens: list
    logit_ids: torch.Tensor
    logit_probabilities: torch.Tensor
    n_layers: int
    scan: str = ""
    model: str = ""
    node_inputs: torch.Tensor | None = None
    node_bias: torch.Tensor | None = None
    info: dict = field(default_factory=dict)

    @property
    def n_pos(self) -> int:
        """Prompt length (with the BOS)."""
        return len(self.input_tokens)

    @property
    def n_features(self) -> int:
        """Feature nodes."""
        return len(self.selected_features)

    @property
    def n_errors(self) -> int:
        """Error nodes (one per layer and position)."""
        return self.n_layers * self.n_pos

    @property
    def n_nodes(self) -> int:
        """All nodes."""
        return self.adjacency_matrix.shape[0]

    def node(self, i: int) -> tuple:
        """Node ``i`` as ``("feature", layer, pos, feature)``, ``("error", layer, pos)``,
        ``("token", pos, token_id)`` or ``("logit", vocab_id)``."""
        s, e = self.n_features, self.n_features + self.n_errors
        if i < s:
            return ("feature", *self.active_features[self.selected_features[i]].tolist())
        if i < e:
            return ("error", *divmod(i - s, self.n_pos))
        if i < e + self.n_pos:
            return ("token", i - e, int(self.input_tokens[i - e]))
        return ("logit", int(self.logit_ids[i - e - self.n_pos]))

    def prune(self, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> Pruned:
        """circuit-tracer's pruning (:func:`acdc_engine.features.prune.prune_graph`)."""
        return prune_graph(self.adjacency_matrix, self.logit_probabilities, self.n_features,
                           self.n_pos, node_threshold, edge_threshold)

    def scores(self) -> tuple[float, float]:
        """(replacement score, completeness score) of the full graph."""
        return graph_scores(self.adjacency_matrix, self.logit_probabilities, self.n_features,
                            self.n_errors, self.n_pos)

    def to_circuit_tracer_json(self, path, slug: str = "graph", node_threshold: float = 0.8,
                               edge_threshold: float = 0.98, tokenizer=None,
                               transcoders: str | None = None):
        """Write the pruned graph as circuit-tracer's graph JSON ``<path>/<slug>.json`` (and
        its ``graph-metadata.json``); the file's path. ``transcoders``: where the graph's
        transcoders come from (a path or cached hub id), recorded in its metadata."""
        from .graph_json import write_graph_json

        return write_graph_json(self, path, slug, node_threshold, edge_threshold, tokenizer,
                                transcoders)

    def to_networkx(self, node_threshold: float = 0.8, edge_threshold: float = 0.98):
        """The pruned graph as a networkx ``MultiDiGraph`` shaped like a component circuit's
        (:func:`acdc_engine.features.graph_json.to_networkx`)."""
        from .graph_json import to_networkx

        return to_networkx(self, node_threshold, edge_threshold)

    def save(self, path) -> None:
        """The full graph in one ``.pt`` file (:meth:`load` reads it back)."""
        torch.save(asdict(self), path)

    to_pt = save

    @staticmethod
    def load(path) -> AttributionGraph:
        """A graph :meth:`save` wrote."""
        try:
            return AttributionGraph(**torch.load(path, weights_only=False))
        except (OSError, RuntimeError, TypeError) as err:
            raise AcdcError(f"{path}: not an attribution graph file ({err})") from None


def _feature_order(att: Attribution, rows_so_far, row_nodes, probs, visited, n: int):
    """The next ``n`` features to visit: by partial influence, not yet visited."""
    inf = partial_influences(torch.cat(rows_so_far), probs, torch.tensor(row_nodes))
    rank = torch.argsort(inf[:len(att.features)], descending=True)
    return rank[~visited[rank]][:n]


def trace(model_or_adapter, prompt, transcoders, *, max_feature_nodes: int | None = None,
          batch_size: int | None = None, targets: tuple[int, float] = (10, 0.95),
          tokenizer=None, vmap: bool = False) -> AttributionGraph:
    """The attribution graph of ``prompt`` (text or token ids) under ``transcoders`` (see
    the module docstring); ``tokenizer`` defaults to the loaded model's. ``targets``:
    ``(n, p)``, the top logits up to cumulative probability ``p``, at most ``n``
    (circuit-tracer's ``max_n_logits``, ``desired_logit_prob``). ``batch_size``:
    targets per backward pass (default 64 on CPU, where small batches stay in cache, 512
    elsewhere). ``vmap``: one forward
    row and backward passes batched over their output gradients (``is_grads_batched``) instead
    of the prompt repeated over the batch."""
    adapter = adapter_of(model_or_adapter)
    tokenizer = tokenizer or getattr(model_or_adapter, "tokenizer", None)
    model_id = getattr(model_or_adapter, "id", None)
    check_transcoders(adapter, transcoders, model_id)
    if batch_size is None:
        batch_size = 64 if adapter.device.type == "cpu" else 512
    if batch_size < 1:
        raise AcdcError(f"batch_size must be at least 1, got {batch_size}")
    ids = prompt_ids(adapter, tokenizer, prompt)
    weights = [p for p in (*adapter.model.parameters(), *transcoders.parameters())
               if p.requires_grad]
    for p in weights:  # gradients reach the graph's leaves only: no weight's autograd graph
        p.requires_grad_(False)
    try:
        return _trace(adapter, ids, transcoders, tokenizer, model_id,
                      (max_feature_nodes, batch_size, *targets, vmap))
    finally:
        for p in weights:
            p.requires_grad_(True)


def _trace(adapter, ids, transcoders, tokenizer, model_id, opts) -> AttributionGraph:
    """:func:`trace` with the weights frozen."""
    max_feature_nodes, batch_size, max_n_logits, desired_logit_prob, vmap = opts
    att = Attribution(adapter, ids, transcoders)
    targets = logit_targets(att.logits, tokenizer, max_n_logits, desired_logit_prob)
    k, m = len(att.features), len(targets.ids)
    n_max = k if max_feature_nodes is None else min(max_feature_nodes, k)
    att.start(min(batch_size, m + k if n_max == k else max(m, n_max)), vmap)
    offset = att.n_columns
    rows, row_nodes = [], []
    visited = torch.zeros(k, dtype=torch.bool)
    order = []
    if n_max == k:  # every feature: the logit rows and the features' share backward passes
        kinds = [(0, i) for i in range(m)] + [(1, f) for f in range(k)]
        for i in range(0, len(kinds), att.B):
            chunk = kinds[i:i + att.B]
            logit = torch.tensor([j for t, j in chunk if t == 0], dtype=torch.long)
            feats = torch.tensor([j for t, j in chunk if t == 1], dtype=torch.long)
            rows.append(att.rows(targets.ids[logit], feats))
            row_nodes += [offset + j for j in logit.tolist()] + feats.tolist()
            order += feats.tolist()
        return _assemble(att, ids, targets, rows, order, tokenizer, transcoders, model_id)
    for i in range(0, m, att.B):
        chunk = targets.ids[i:i + att.B]
        rows.append(att.logit_rows(chunk))
        row_nodes += list(range(offset + i, offset + i + len(chunk)))
    while len(order) < n_max:
        pad = [torch.cat([r, torch.zeros(len(r), m)], 1) for r in rows]
        pending = torch.arange(k) if n_max == k else _feature_order(
            att, pad, row_nodes, targets.probabilities, visited,
            min(4 * batch_size, n_max - len(order)))
        for i in range(0, len(pending), att.B):
            idx = pending[i:i + att.B]
            rows.append(att.feature_rows(idx))
            row_nodes += idx.tolist()
            visited[idx] = True
            order += idx.tolist()
    return _assemble(att, ids, targets, rows, order, tokenizer, transcoders, model_id)


def _assemble(att, ids, targets, rows, order, tokenizer, transcoders, model_id):
    """The square adjacency over the visited features, errors, tokens and logits."""
    k, m = len(att.features), len(targets.ids)
    selected = torch.tensor(sorted(order), dtype=torch.long)
    cols = torch.cat([selected, torch.arange(k, att.n_columns)])
    block = torch.cat(rows)[:, cols]  # logit rows first, then features in visit order
    s = len(selected)
    N = s + (att.n_layers + 1) * att.n_pos + m
    adj = torch.zeros(N, N, dtype=block.dtype)
    adj[-m:, :block.shape[1]] = block[:m]
    if s:
        where = {f: i for i, f in enumerate(selected.tolist())}
        adj[torch.tensor([where[f] for f in order]), :block.shape[1]] = block[m:]
    feat_bias, logit_bias = att.bias_terms(targets.ids)
    inputs, bias = torch.zeros(N, dtype=adj.dtype), torch.zeros(N, dtype=adj.dtype)
    inputs[:s] = att.feature_inputs.cpu()[selected]
    bias[:s] = feat_bias.cpu()[selected]
    demeaned = (att.logits - att.logits.mean()).cpu()
    inputs[-m:] = demeaned[targets.ids]
    bias[-m:] = logit_bias
    text = tokenizer.decode(ids.tolist()) if tokenizer is not None else ""
    return AttributionGraph(
        input_string=text, input_tokens=ids.cpu(), active_features=att.features,
        activation_values=att.activations, selected_features=selected, adjacency_matrix=adj,
        logit_tokens=targets.tokens, logit_ids=targets.ids,
        logit_probabilities=targets.probabilities, n_layers=att.n_layers,
        scan=str(getattr(transcoders, "scan", "") or getattr(transcoders, "model", "") or ""),
        model=str(model_id or ""), node_inputs=inputs, node_bias=bias)
