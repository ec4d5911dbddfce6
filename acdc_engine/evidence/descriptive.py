"""Descriptive evidence: what a model's components look at and write, before any ablation.

    pats = attention_patterns(model, ids)          # [n_layers, n_heads, batch, q_pos, k_pos]
    lens = logit_lens(model, ids, answer, wrong)   # .logit_diff / .answer_rank per layer
    dla = direct_logit_attribution(problem)        # [n_writers]: each writer's direct effect
    tok = token_attribution(problem)               # [n_examples, pos]: which input tokens

Descriptive tools suggest a circuit; they do not test it (that is :mod:`.causal`). Every number
here comes from the model's own modules: attention patterns from the Hugging Face forward traced
through nnsight (eager attention, so the weights exist), the residual stream and the writers'
outputs from :func:`acdc_engine.patching.run` (the one forward every circuit number comes from;
the adapter reproduces the model's own logits, checked at load time).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ..errors import AcdcError
from ..models import LoadedModel
from ..patching import writer_outputs
from ..problem import Problem

__all__ = ["attention_patterns", "logit_lens", "LogitLens", "direct_logit_attribution",
           "token_attribution", "residual_stream", "TOKEN_METHODS"]

TOKEN_METHODS = ("input_x_grad", "integrated_gradients")
"""The token-attribution methods :func:`token_attribution` offers."""


# ----- attention patterns -----------------------------------------------------------------------
@contextmanager
def _eager_attention(hf):
    """Switch ``hf`` to the eager attention implementation (the only one that returns its
    weights) and restore the model's own setting afterwards."""
    cfg = getattr(hf, "config", None)
    before = getattr(cfg, "_attn_implementation", None)
    switch = before not in (None, "eager") and hasattr(hf, "set_attn_implementation")
    if switch:
        hf.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            hf.set_attn_implementation(before)


def _tl_style_patterns(model: LoadedModel, ids: torch.Tensor) -> torch.Tensor | None:
    """Patterns of models whose attention modules hold per-head ``W_Q``/``W_K`` (tracr and other
    TransformerLens-style models, which do not report their weights): recomputed from each
    attention module's input, captured by nnsight. None when the model is not of that kind."""
    hf = model.hf
    blocks = getattr(hf, "blocks", None)
    if blocks is None or not all(hasattr(b, "attn") and hasattr(b.attn, "W_Q") for b in blocks):
        return None
    inputs = []
    with torch.no_grad(), model.nn.trace(ids):
        for i in range(len(blocks)):  # a plain loop: nnsight traces this block's code
            inputs.append(model.nn.blocks[i].attn.input.save())
    out = []
    for blk, x in zip(blocks, inputs):
        a = blk.attn
        q = torch.einsum("bpd,hde->hbpe", x, a.W_Q) + a.b_Q[:, None, None]  # [H, b, p, dh]
        k = torch.einsum("bpd,hde->hbpe", x, a.W_K) + a.b_K[:, None, None]
        scores = torch.einsum("hbpe,hbse->hbps", q, k) * float(getattr(a, "scale", 1.0))
        if getattr(a, "causal", True):
            p = scores.shape[-1]
            future = torch.ones(p, p, dtype=torch.bool, device=scores.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        out.append(scores.softmax(-1))
    return torch.stack(out)


@torch.no_grad()
def attention_patterns(model: LoadedModel, ids: torch.Tensor) -> torch.Tensor:
    """Every head's attention weights on ``ids`` [batch, pos]:
    ``[n_layers, n_heads, batch, q_pos, k_pos]`` (rows sum to 1).

    Runs the Hugging Face model through nnsight with ``output_attentions=True`` under the eager
    attention implementation (restored afterwards); models that do not report attention weights
    but keep per-head ``W_Q``/``W_K`` (tracr) are recomputed from their attention inputs."""
    ids = ids.to(model.device)
    with _eager_attention(model.hf), model.nn.trace(ids, output_attentions=True):
        out = model.nn.output.save()
    attn = getattr(out, "attentions", None)
    if attn:
        pats = torch.stack([a.float() for a in attn])  # [L, b, H, q, k]
        return pats.permute(0, 2, 1, 3, 4).contiguous()
    pats = _tl_style_patterns(model, ids)
    if pats is None:
        raise AcdcError(f"model {model.id!r} ({type(model.hf).__name__}) reports no attention "
                        "weights, even with output_attentions=True under eager attention")
    return pats.float()


# ----- residual stream and logit lens -----------------------------------------------------------
@torch.no_grad()
def residual_stream(model: LoadedModel, ids: torch.Tensor) -> torch.Tensor:
    """The residual stream after the embeddings and after each layer:
    ``[n_layers + 1, batch, pos, d_model]`` (before the final norm), summed from the writers'
    outputs of :func:`acdc_engine.patching.run` and the layers' constant biases."""
    adapter, g = model.adapter, model.graph
    acts = writer_outputs(adapter, ids.to(model.device))  # [W, b, p, d]
    out = [acts[0]]
    for layer in range(g.n_layers):
        upto = g.attn_upstream(layer + 1) if layer + 1 < g.n_layers else g.n_writers
        resid = acts[:upto].sum(0)
        for lay in range(layer + 1):
            bias = adapter.attn_bias(lay)
            if bias is not None:
                resid = resid + bias
        out.append(resid)
    return torch.stack(out)


@dataclass
class LogitLens:
    """The answer read off the residual stream after the embeddings and after each layer.

    ``logit_diff`` [n_layers + 1, batch]: answer logit minus wrong-answer logit (the answer
    logit when no wrong answer was given); ``answer_rank`` [n_layers + 1, batch]: 0 = the
    top token; ``top_tokens[layer][example]``: the 5 most likely ``(token_id, prob)``."""

    logit_diff: torch.Tensor
    answer_rank: torch.Tensor
    top_tokens: list[list[list[tuple[int, float]]]]

    @property
    def n_layers(self) -> int:
        return self.logit_diff.shape[0] - 1


def _as_index(x, batch: int, device) -> torch.Tensor:
    t = torch.as_tensor(x, device=device).long().reshape(-1)
    return t.expand(batch) if t.numel() == 1 else t


@torch.no_grad()
def logit_lens(model: LoadedModel, ids: torch.Tensor, answer, wrong=None,
               position: int = -1) -> LogitLens:
    """Unembed the residual stream after each layer at ``position`` with the model's own final
    norm and head (``adapter.unembed``). ``answer``/``wrong``: token ids, one per example or one
    for all."""
    ids = ids.to(model.device)
    b = ids.shape[0]
    resid = residual_stream(model, ids)[:, :, position]  # [L+1, b, d]
    logits = model.adapter.unembed(resid[:, :, None])[:, :, 0].float()  # [L+1, b, V]
    a = _as_index(answer, b, logits.device)
    rows = torch.arange(b, device=logits.device)
    ans = logits[:, rows, a]  # [L+1, b]
    diff = ans if wrong is None else ans - logits[:, rows, _as_index(wrong, b, logits.device)]
    rank = (logits > ans[..., None]).sum(-1)  # [L+1, b]
    probs, top = logits.softmax(-1).topk(min(5, logits.shape[-1]), dim=-1)  # [L+1, b, 5]
    tops = [[list(zip(top[i, j].tolist(), probs[i, j].tolist())) for j in range(b)]
            for i in range(logits.shape[0])]
    return LogitLens(diff.cpu(), rank.cpu(), tops)


# ----- direct logit attribution ------------------------------------------------------------------
def direct_logit_attribution(problem: Problem, baseline: str | None = "zero") -> torch.Tensor:
    """Each writer's first-order direct effect on the metric, mean over examples: ``[n_writers]``.

    ``dla[u] = (out_u - base_u) . d metric / d (input of the logits)``: the gradient of the
    metric with respect to what the final norm and head read, dotted with what ``u`` writes
    there. ``baseline`` ``"zero"`` (default) is the classic DLA; ``None`` takes the problem's
    ablation (then ``dla`` is minus the EAP scores of the edges ``u->logits``, which measure
    clean -> ablated); ``"mean"`` or ``"corrupted"`` name one. It is the gradient of the
    patched forward's edge mask (:func:`acdc_engine.patching.run`) on the edges into
    ``logits``. With a linear readout and a
    linear metric (tracr, logit difference) the writers' values sum exactly to the metric
    change when every edge into the logits is replaced by its baseline."""
    from ..interventions import source_activations

    model, g = problem.model, problem.graph
    src = baseline or problem.ablation.kind
    total = torch.zeros(g.n_writers)
    for i, batch in enumerate(problem.batches):
        mask = torch.ones(g.n_writers, g.n_readers, device=model.device, dtype=model.dtype)
        mask.requires_grad_(True)
        abl = source_activations(problem, i, src)
        problem.score(batch, mask, abl).sum().backward()
        total += mask.grad[:, g.logits_slot].detach().float().cpu()
    return total / problem.n_examples


# ----- token attribution -----------------------------------------------------------------------
def token_attribution(problem: Problem, method: str = "input_x_grad", steps: int = 16,
                      baseline: str = "corrupted") -> torch.Tensor:
    """How much each input token's embedding moves the metric: ``[n_examples, pos]``.

    ``input_x_grad``: ``(x - x0) . d metric / dx`` at the clean embeddings ``x``;
    ``integrated_gradients``: the same with the gradient averaged over ``steps`` points on the
    line from ``x0`` to ``x`` (midpoint rule), so the positions sum to ``metric(x) -
    metric(x0)`` up to the quadrature error. ``x0`` is the corrupted prompt's embeddings
    (``baseline="corrupted"``) or zero (``"zero"``: classic input x gradient). Examples are in
    batch order (``problem.batches``); prompts shorter than the longest are padded with NaN
    at the end."""
    if method not in TOKEN_METHODS:
        raise AcdcError(f"unknown token attribution {method!r} (use {', '.join(TOKEN_METHODS)})")
    if baseline not in ("corrupted", "zero"):
        raise AcdcError(f"unknown baseline {baseline!r} (use corrupted or zero)")
    if steps < 1:
        raise AcdcError(f"steps must be at least 1, got {steps}")
    adapter = problem.model.adapter
    alphas = [1.0] if method == "input_x_grad" else [(k + 0.5) / steps for k in range(steps)]
    rows = []
    for batch in problem.batches:
        with torch.no_grad():
            x = adapter.embed(batch.clean)  # [b, p, d]
            x0 = adapter.embed(batch.corrupted) if baseline == "corrupted" else torch.zeros_like(x)
        grad = torch.zeros_like(x)
        for a in alphas:
            e = (x0 + a * (x - x0)).detach().requires_grad_(True)
            (g,) = torch.autograd.grad(problem.score(batch, embed=e).sum(), e)
            grad += g.detach()
        rows.append(((x - x0) * grad / len(alphas)).sum(-1).float().cpu())  # [b, p]
    width = max(r.shape[1] for r in rows)
    out = torch.full((sum(len(r) for r in rows), width), float("nan"))
    n = 0
    for r in rows:
        out[n : n + len(r), : r.shape[1]] = r
        n += len(r)
    return out
