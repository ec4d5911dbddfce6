"""The batched backward passes that fill an attribution graph's adjacency.

One frozen forward pass of the replacement model on the prompt repeated over ``batch`` rows
(:class:`Attribution`): attention patterns and norm scales frozen, every MLP output a constant
leaf (the features are nodes: their outputs do not depend on their inputs in the linear
replacement model), the embeddings a leaf. One backward pass then gives one target per row:

* a logit node ``t``: the gradient of ``logit_t - mean(logits)`` at the last position;
* a feature node (layer ``l``, pos ``p``, feature ``f``): its pre-activation, i.e. the encoder
  vector ``W_enc[:, f]`` as the gradient of layer ``l``'s MLP input at ``p``.

The edge from a source into that row's target is the source's vector dotted with the gradient
at the place it writes: a feature (layer ``l``, pos ``p``, activation ``a``) ``a *
decoder(l, j)[f] . grad(mlp_out_j)[p]`` summed over ``j >= l``; an error node (``j``, ``p``)
``error_j[p] . grad(mlp_out_j)[p]``; a token (``p``) ``token_embed[p] . grad(embed)[p]``.

:meth:`Attribution.bias_terms` measures the rest of each target independently: the same
model frozen *in value* (the forward's patterns and scales replayed) run with every node's
contribution removed; each target is then its edges' sum plus that bias, exactly.
"""

from __future__ import annotations

import torch

from ..patching import run
from ..patching.frozen import Freezer
from ..patching.plan import LAST, Context, PatchPlan
from .graph_nodes import active_features
from .splice import spliced_run

__all__ = ["Attribution", "encoder_matrix"]


def encoder_matrix(transcoders, layer: int) -> torch.Tensor:
    """Layer ``layer``'s encoder [d, n] (a transcoder set's or a cross-layer transcoder's)."""
    if hasattr(transcoders, "layers"):
        return transcoders.layers[layer].W_enc
    return transcoders.W_enc[layer]


class _Leaves:
    """``PatchPlan.mlps``: each MLP's output becomes a constant (``outs``, the MLP's own
    outputs [1, p, d], over the batch) that requires grad; the MLP itself is not run."""

    needs_output = False

    def __init__(self, outs, batch: int):
        self.outs, self.batch = outs, batch
        self.mlp_in, self.out = {}, {}

    def __call__(self, layer, mlp_in, out):
        self.mlp_in[layer] = mlp_in
        o = self.outs[layer]
        self.out[layer] = o.expand(self.batch, *o.shape[1:]).requires_grad_(True)
        return self.out[layer]


class _Fixed:
    """``PatchPlan.mlps``: each MLP's output replaced by a given tensor (its input kept)."""

    def __init__(self, outs):
        self.outs, self.mlp_in = outs, {}

    def __call__(self, layer, mlp_in, out):
        self.mlp_in[layer] = mlp_in
        return self.outs[layer]


class Attribution:
    """The forward pass and the backward passes of one prompt's attribution graph.

    Fields: ``features`` [k, 3] (layer, pos, feature) and ``activations`` [k] of the active
    features, ``errors`` [L, p, d], ``tokens`` [p, d], ``logits`` [vocab] at the last position,
    ``feature_inputs`` [k] (each active feature's pre-activation).
    """

    def __init__(self, adapter, ids: torch.Tensor, transcoders):
        self.adapter, self.ids, self.tc = adapter, ids, transcoders
        L, p = transcoders.n_layers, len(ids)
        self.n_layers, self.n_pos = L, p
        with torch.no_grad():
            base = spliced_run(adapter, ids[None], transcoders, freeze=True, readout=LAST)
            self.base = base
            acts = [a[0].clone() for a in base.acts]
            self.features, self.activations = active_features(acts)
            for a in acts:
                a[0] = 0
            zeroed = [a[None] for a in acts]
            errors = torch.stack([base.mlp_out[j][0] - transcoders.decode(j, zeroed)[0]
                                  for j in range(L)])
            errors[:, 0] = 0
            self.errors = errors  # [L, p, d]
            self.tokens = adapter.token_embed(ids[None])[0]  # [p, d]
            self.logits = base.logits[0, -1]
            self.feature_inputs = self._pre_acts([m[0] for m in base.mlp_in])
            self._vectors()

    def start(self, batch: int, vmap: bool = False) -> None:
        """The gradient forward pass, for backward passes of up to ``batch`` targets each;
        ``vmap``: one row, the backward passes batched over their output gradients."""
        self.B, self.vmap = batch, vmap
        self._forward()

    def _pre_acts(self, mlp_in: list) -> torch.Tensor:
        """The active features' pre-activations from the MLP inputs ``mlp_in`` (per layer
        [p, d])."""
        out = torch.zeros(len(self.features), dtype=self.tokens.dtype, device=self.tokens.device)
        for layer, sel in self.by_layer().items():
            pos, feat = self.features[sel, 1], self.features[sel, 2]
            pre = self.tc.pre_acts(layer, mlp_in[layer])  # [p, n]
            out[sel.to(out.device)] = pre[pos, feat].to(out.dtype)
        return out

    def by_layer(self) -> dict:
        """layer -> indices (into the active features) of that layer's features."""
        layers = self.features[:, 0]
        return {int(i): (layers == i).nonzero()[:, 0] for i in layers.unique()}

    def _vectors(self) -> None:
        """Per source layer ``l``: each active feature's decoder vectors into every ``j >= l``,
        scaled by its activation; and its encoder vector."""
        self.dec, self.enc = {}, torch.zeros(len(self.features), self.tokens.shape[-1],
                                             dtype=self.tokens.dtype)
        for layer, sel in self.by_layer().items():
            feat = self.features[sel, 2]
            act = self.activations[sel].to(self.tokens.device)[:, None]
            self.enc[sel] = encoder_matrix(self.tc, layer)[:, feat].T.detach().cpu()
            for j in range(layer, self.n_layers):
                w = self.tc.decoder(layer, j)
                if w is not None:
                    self.dec[layer, j] = (w[feat].detach() * act)
        # the features are sorted by (layer, pos, feature): per layer, one column span per
        # position (a product of [n, d] gradients and [span, d] vectors each, no gather)
        self.spans = {}
        for layer, sel in self.by_layer().items():
            start, pos = int(sel[0]), self.features[sel, 1].tolist()
            cuts = [0] + [i for i in range(1, len(pos)) if pos[i] != pos[i - 1]] + [len(pos)]
            self.spans[layer] = [(pos[a], start + a, start + b, a, b)
                                 for a, b in zip(cuts, cuts[1:])]

    def _forward(self) -> None:
        """The frozen forward on ``B`` copies of the prompt (one with ``vmap``: the backward
        passes are then batched over their output gradients), MLP outputs and embeddings
        leaves."""
        adapter, B = self.adapter, 1 if self.vmap else self.B
        ids = self.ids[None].expand(B, -1)
        with torch.no_grad():
            e = adapter.embed(self.ids[None])
        self.embed = e.repeat(B, 1, 1).requires_grad_(True)
        self.leaves = _Leaves(self.base.mlp_out, B)
        with torch.enable_grad():
            self.batch_logits = run(adapter, ids, PatchPlan(embed=self.embed, mlps=self.leaves),
                                    LAST, Context(fuse=False, freeze=Freezer()))

    @property
    def n_columns(self) -> int:
        """Source columns: active features, errors (layer-major), tokens."""
        return len(self.features) + (self.n_layers + 1) * self.n_pos

    def logit_rows(self, vocab_ids: torch.Tensor) -> torch.Tensor:
        """Rows [n, n_columns] of the logit nodes ``vocab_ids`` (n <= batch)."""
        return self.rows(vocab_ids, torch.zeros(0, dtype=torch.long))

    def feature_rows(self, idx: torch.Tensor) -> torch.Tensor:
        """Rows [n, n_columns] of the active features ``idx`` (n <= batch): their
        pre-activations' edges."""
        return self.rows(torch.zeros(0, dtype=torch.long), idx)

    def _zeros(self, x: torch.Tensor, n: int) -> torch.Tensor:
        """Zero output gradients for ``x``: like it, or ``n`` of them (vmap)."""
        return x.new_zeros(n, *x.shape) if self.vmap else torch.zeros_like(x)

    def rows(self, vocab_ids: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Rows [m + k, n_columns] of the logit nodes ``vocab_ids`` (m), then of the active
        features ``idx`` (k), in one backward pass (m + k <= batch)."""
        m, n = len(vocab_ids), len(vocab_ids) + len(idx)
        outs, grads = [], []
        if m:
            V = self.batch_logits.shape[-1]
            g = self._zeros(self.batch_logits, n)  # [B, 1, V] (vmap: [n, 1, 1, V])
            g[:m] = -1.0 / V
            at = (torch.arange(m), 0, 0) if self.vmap else (torch.arange(m), 0)
            g[(*at, vocab_ids.to(g.device))] += 1.0
            outs.append(self.batch_logits)
            grads.append(g)
        layer, pos = self.features[idx, 0], self.features[idx, 1]
        for i in layer.unique().tolist():
            sel = (layer == i).nonzero()[:, 0]
            x = self.leaves.mlp_in[i]
            g = self._zeros(x, n)
            r, q = (sel + m).to(g.device), pos[sel].to(g.device)
            enc = self.enc[idx[sel]].to(g.device, g.dtype)
            if self.vmap:
                g[r, 0, q] = enc
            else:
                g[r, q] = enc
            outs.append(x)
            grads.append(g)
        return self._backward(outs, grads, n)

    def _backward(self, outs, grads, n: int) -> torch.Tensor:
        """One backward pass: the first ``n`` rows' edges from every source column."""
        L = self.n_layers
        leaves = [self.leaves.out[j] for j in range(L)] + [self.embed]
        g = torch.autograd.grad(outs, leaves, grads, retain_graph=True, allow_unused=True,
                                is_grads_batched=self.vmap)
        if self.vmap:  # [n, 1, p, d] -> [n, p, d]
            g = [None if x is None else x[:, 0] for x in g]
        gm, ge = g[:L], g[L]
        dt = self.tokens.dtype
        feats = torch.zeros(n, len(self.features), dtype=dt, device=self.tokens.device)
        for layer, spans in self.spans.items():
            for j in range(layer, L):
                if gm[j] is None or (layer, j) not in self.dec:
                    continue
                vec = self.dec[layer, j]
                for q, c0, c1, v0, v1 in spans:
                    feats[:, c0:c1] += gm[j][:n, q] @ vec[v0:v1].T
        zero = torch.zeros(n, self.n_pos, dtype=dt, device=feats.device)
        errs = [zero if gm[j] is None else (gm[j][:n] * self.errors[j]).sum(-1)
                for j in range(L)]
        toks = zero if ge is None else (ge[:n] * self.tokens).sum(-1)
        return torch.cat([feats, *errs, toks], dim=1).detach().cpu()

    def bias_terms(self, vocab_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(per active feature, per logit node ``vocab_ids``) the part of the target no node
        explains: the value-frozen run with every node's contribution removed (MLP outputs
        their decoder bias, except at position 0, which is all bias; embeddings without the
        token part)."""
        base, tc = self.base, self.tc
        with torch.no_grad():
            outs = []
            for j in range(self.n_layers):
                o = tc.b_dec(j).to(self.tokens.dtype).expand_as(base.mlp_out[j]).clone()
                o[:, 0] = base.mlp_out[j][:, 0]
                outs.append(o)
            embed = self.adapter.embed(self.ids[None]) - self.tokens[None]
            fixed = _Fixed(outs)
            logits = run(self.adapter, self.ids[None], PatchPlan(embed=embed, mlps=fixed), LAST,
                         Context(fuse=False, freeze=base.freezer.replay()))[0, -1]
            feats = self._pre_acts([fixed.mlp_in[j][0] for j in range(self.n_layers)])
        return feats, (logits - logits.mean())[vocab_ids.to(logits.device)].cpu()
