"""What a feature is: its card (top-activating contexts, logit effects, activation density).

    card = feature_card(model, transcoders, layer=1, feature=7, corpus=texts)
    card.contexts[0].text        # "... the token [[marked]] ..." (the activating token marked)
    card.promoted, card.suppressed   # [(token, logit effect)], through the unembedding
    card.density                 # fraction of the corpus' tokens where it is active
    card.to_dict()               # what the viewer shows

The contexts come from running the model over ``corpus`` (texts, or token ids ``[n, pos]``)
and encoding the dictionary's input at every token: a transcoder's is its layer's MLP input
after the MLP's norm (:func:`acdc_engine.features.splice.spliced_run`'s ``mlp_in``), an
SAE's the residual stream after its layer. One pass encodes every feature of the layer, so the
pass's summary (each feature's top ``k`` activations with where they occur, and how often it
is active) is cached in ``results/.cache/features/`` under a key made of the dictionary's
content hash, the layer and the corpus' hash: every later card of that layer and corpus is
read from the file.

The logit effects are the feature's decoder vector (a cross-layer transcoder's vectors into
every later layer, added: they all land in the residual stream) through the final norm's
linear part (a LayerNorm's ``gamma * (v - mean v)``, an RMSNorm's ``gamma * v``: the norm with
its input scale frozen) and the unembedding, as circuit-tracer and Neuronpedia show them: the
``n`` tokens it raises most are ``promoted``, those it lowers most ``suppressed``.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..errors import AcdcError
from .dictionary import Transcoders

__all__ = ["FeatureCard", "Context", "feature_card", "feature_activations", "logit_effects",
           "corpus_ids", "dictionary_hash", "norm_linear", "n_features",
           "default_corpus", "shipped_corpus_path"]

TOP_K = 16
"""Top activations kept per feature in the cache (a card shows up to this many)."""


@dataclass
class Context:
    """One top-activating context: ``tokens`` (the text around it, as token strings),
    ``marked`` (the index in ``tokens`` of the token where the feature fires), its
    ``activation``, and where it is in the corpus (``example``, ``position``)."""

    activation: float
    tokens: list[str]
    marked: int
    example: int
    position: int

    @property
    def text(self) -> str:
        """The context with the activating token marked ``[[like this]]``."""
        return "".join(f"[[{t}]]" if i == self.marked else t for i, t in enumerate(self.tokens))


@dataclass
class FeatureCard:
    """Feature ``feature`` of layer ``layer`` of a dictionary (``kind``: transcoder, clt or
    sae): its top-activating ``contexts`` (highest first), the tokens it ``promoted`` and
    ``suppressed`` through the unembedding ``[(token, effect)]``, its ``density`` (fraction of
    the ``n_tokens`` corpus tokens where it is active), its largest and mean active
    activation, and the hashes of the dictionary and corpus it was computed from."""

    layer: int
    feature: int
    kind: str
    contexts: list[Context]
    promoted: list[tuple[str, float]]
    suppressed: list[tuple[str, float]]
    density: float
    n_tokens: int
    max_activation: float
    mean_activation: float
    dictionary_hash: str = ""
    corpus_hash: str = ""
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready (the viewer's form): contexts carry their ``text`` with the mark."""
        d = asdict(self)
        d["contexts"] = [{**asdict(c), "text": c.text} for c in self.contexts]
        d["promoted"] = [[t, v] for t, v in self.promoted]
        d["suppressed"] = [[t, v] for t, v in self.suppressed]
        return d

    def summary(self) -> str:
        """A few readable lines: density, top contexts, logit effects."""
        lines = [f"L{self.layer} feature {self.feature} ({self.kind}): active on "
                 f"{self.density:.2%} of {self.n_tokens} tokens, max {self.max_activation:.3g}"]
        lines += [f"  {c.activation:8.3g}  {c.text!r}" for c in self.contexts[:5]]
        lines.append("  promotes:   " + ", ".join(f"{t!r} {v:+.3g}" for t, v in self.promoted))
        lines.append("  suppresses: " + ", ".join(f"{t!r} {v:+.3g}" for t, v in
                                                  self.suppressed))
        return "\n".join(lines)


# ----- inputs ------------------------------------------------------------------------------
def _adapter_tok(model):
    """``(adapter, tokenizer or None)`` of a LoadedModel or an adapter."""
    adapter = getattr(model, "adapter", model)
    return adapter, getattr(model, "tokenizer", None)


def corpus_ids(corpus, tokenizer=None, max_len: int | None = None) -> tuple[torch.Tensor,
                                                                             torch.Tensor]:
    """``(ids [n, P], lengths [n])`` of ``corpus``: token ids ``[n, P]`` (every row full length),
    a list of id lists, or texts (tokenized by ``tokenizer``); rows right-padded with 0, cut
    at ``max_len``."""
    if isinstance(corpus, torch.Tensor):
        if corpus.dim() != 2:
            raise AcdcError(f"a corpus of token ids must be [n, pos], got {tuple(corpus.shape)}")
        rows = corpus.long().tolist()
    else:
        rows = []
        for item in corpus:
            if isinstance(item, str):
                if tokenizer is None:
                    raise AcdcError("a corpus of texts needs the model's tokenizer: pass the "
                                    "LoadedModel, or token ids")
                kw = {"truncation": True, "max_length": max_len} if max_len else {}
                rows.append(tokenizer(item, add_special_tokens=False, **kw)["input_ids"])
            else:
                rows.append([int(t) for t in item])
    rows = [r[:max_len] if max_len else r for r in rows if len(r) > 0]
    if not rows:
        raise AcdcError("the corpus is empty (no text with at least one token)")
    P = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), P, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
    return ids, torch.tensor([len(r) for r in rows])


def _resid_after(adapter, ids: torch.Tensor, layer: int) -> torch.Tensor:
    """The residual stream after ``layer`` (-1: the embeddings) [b, p, d]."""
    from ..patching import writer_outputs

    g = adapter.graph
    acts = writer_outputs(adapter, ids)  # [W, b, p, d]
    upto = 1 if layer < 0 else (g.attn_upstream(layer + 1) if layer + 1 < g.n_layers
                                else g.n_writers)
    resid = acts[:upto].sum(0)
    for lay in range(layer + 1):
        bias = adapter.attn_bias(lay)
        if bias is not None:
            resid = resid + bias
    return resid


@torch.no_grad()
def feature_activations(model, dictionary, layer: int, ids: torch.Tensor) -> torch.Tensor:
    """Every feature's activation of ``layer`` at every token of ``ids`` [b, p]: [b, p, n].
    ``dictionary``: transcoders (:class:`Transcoders`; read from the MLP input after its norm
    through the splice) or an SAE of the residual stream after its layer."""
    adapter, _ = _adapter_tok(model)
    ids = ids.to(adapter.device)
    if isinstance(dictionary, Transcoders):
        from .splice import spliced_run

        if not 0 <= layer < dictionary.n_layers:
            raise AcdcError(f"layer {layer} is not one of the transcoders' layers "
                            f"0..{dictionary.n_layers - 1}")
        return spliced_run(adapter, ids, dictionary).acts[layer].float()
    sae_layer = getattr(dictionary, "layer", layer)
    if sae_layer != layer:
        raise AcdcError(f"the SAE reads the residual stream after layer {sae_layer}, not "
                        f"layer {layer}")
    x = _resid_after(adapter, ids, layer)
    return dictionary.to(x.device, x.dtype).encode(x).float()


def n_features(dictionary, layer: int) -> int:
    """The number of features of ``dictionary`` at ``layer``."""
    if isinstance(dictionary, Transcoders):
        if not 0 <= layer < dictionary.n_layers:
            raise AcdcError(f"layer {layer} is not one of the transcoders' layers "
                            f"0..{dictionary.n_layers - 1}")
        return int(dictionary.decoder(layer, layer).shape[0])
    return int(dictionary.W_dec.shape[0])


# ----- logit effects -----------------------------------------------------------------------
def norm_linear(norm: torch.nn.Module, v: torch.Tensor) -> torch.Tensor:
    """The linear part of a final norm applied to ``v`` [..., d] (its input scale frozen):
    ``gamma * (v - mean v)`` for a LayerNorm, ``gamma * v`` for an RMSNorm (Gemma's ``(1 +
    gamma) * v``), i.e. ``(norm(v) - bias) * scale(v)``."""
    if norm is None or isinstance(norm, torch.nn.Identity):
        return v
    eps = getattr(norm, "eps", getattr(norm, "variance_epsilon", 1e-5))
    eps = eps[0] if isinstance(eps, tuple) else float(eps)
    vf = v.float()
    is_ln = "LayerNorm" in type(norm).__name__
    if is_ln:
        scale = (vf.var(-1, unbiased=False, keepdim=True) + eps).sqrt()
    else:
        scale = (vf.pow(2).mean(-1, keepdim=True) + eps).sqrt()
    out = norm(v).float()
    bias = getattr(norm, "bias", None)
    if isinstance(bias, torch.Tensor):
        out = out - bias.float()
    return out * scale


def _feature_vector(dictionary, layer: int, feature: int) -> torch.Tensor:
    """What feature ``feature`` of ``layer`` adds to the residual stream per unit of
    activation [d]: its decoder vector(s), summed over the layers it writes to."""
    if isinstance(dictionary, Transcoders):
        out = None
        for j in range(layer, dictionary.n_layers):
            w = dictionary.decoder(layer, j)
            if w is not None:
                out = w[feature] if out is None else out + w[feature]
        if out is None:
            raise AcdcError(f"layer {layer}'s features write nowhere in these transcoders")
        return out.detach()
    return dictionary.W_dec[feature].detach()


@torch.no_grad()
def logit_effects(model, dictionary, layer: int, feature: int) -> torch.Tensor:
    """The direct effect [vocab] of one unit of the feature on the logits: its decoder
    vector(s) through the final norm's linear part and the unembedding (no bias)."""
    adapter, _ = _adapter_tok(model)
    v = _feature_vector(dictionary, layer, feature).to(adapter.device)
    lin = adapter.unembed_linear() if hasattr(adapter, "unembed_linear") else None
    if lin is None:  # no (norm, W_U) split: the unembedding of the direction, minus that of 0
        x = v.to(adapter.dtype)[None, None]
        return (adapter.unembed(x) - adapter.unembed(torch.zeros_like(x)))[0, 0].float()
    norm, weight, _ = lin
    return norm_linear(norm, v.to(weight.dtype)) @ weight.float().T


# ----- the cache ---------------------------------------------------------------------------
def dictionary_hash(dictionary: torch.nn.Module) -> str:
    """A content hash of a dictionary: its config (when it has one) and every tensor."""
    h = hashlib.sha256(type(dictionary).__name__.encode())
    if hasattr(dictionary, "config"):
        h.update(repr(sorted(dictionary.config().items())).encode())
    for name, t in sorted(dictionary.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _ids_hash(ids: torch.Tensor, lengths: torch.Tensor) -> str:
    h = hashlib.sha256(ids.numpy().tobytes())
    h.update(lengths.numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def _summarize(model, dictionary, layer: int, ids: torch.Tensor, lengths: torch.Tensor,
               batch_size: int = 16) -> dict:
    """Every feature's top ``TOP_K`` activations (values, flat token indices), how many tokens
    it is active on and its summed activation, over the corpus."""
    vals = idx = None
    count = total = None
    P = ids.shape[1]
    by_len = lengths.argsort(stable=True)  # texts of like length together: little padding
    for s in range(0, len(ids), batch_size):
        rows = by_len[s:s + batch_size]
        n_pos = int(lengths[rows].max())
        b_ids = ids[rows, :n_pos]
        acts = feature_activations(model, dictionary, layer, b_ids).cpu()  # [b, p, n]
        valid = torch.arange(n_pos)[None, :] < lengths[rows, None]  # [b, p]
        acts = acts.masked_fill(~valid[..., None], float("-inf"))
        flat = acts.reshape(-1, acts.shape[-1])  # [b*p, n]
        pos = (rows[:, None] * P + torch.arange(n_pos)[None, :]).reshape(-1)  # corpus index
        active = (flat > 0)
        c, t = active.sum(0), torch.where(active, flat, 0.0).sum(0)
        count = c if count is None else count + c
        total = t if total is None else total + t
        k = min(TOP_K, flat.shape[0])
        tv, ti = flat.topk(k, dim=0)  # [k, n]
        ti = pos[ti]
        if vals is not None:
            tv, ti = torch.cat([vals, tv]), torch.cat([idx, ti])
            order = tv.topk(min(TOP_K, len(tv)), dim=0).indices
            tv, ti = tv.gather(0, order), ti.gather(0, order)
        vals, idx = tv, ti
    return {"values": vals, "indices": idx, "count": count, "total": total,
            "n_tokens": int(lengths.sum())}


def _cache_path(cache_dir, key: str) -> Path:
    if cache_dir is None:
        from ..records.store import results_dir

        cache_dir = results_dir() / ".cache" / "features"
    return Path(cache_dir) / f"{key}.pt"


def _summary(model, dictionary, layer, ids, lengths, cache_dir) -> tuple[dict, str, str]:
    """The layer's corpus summary, from the cache file when it is there (written otherwise)."""
    dh, ch = dictionary_hash(dictionary), _ids_hash(ids, lengths)
    path = _cache_path(cache_dir, f"{dh}-L{layer}-{ch}") if cache_dir is not False else None
    if path is not None and path.exists():
        try:
            return torch.load(path, weights_only=True), dh, ch
        except (OSError, RuntimeError, EOFError):
            pass  # a damaged cache file is recomputed and rewritten
    summ = _summarize(model, dictionary, layer, ids, lengths)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(summ, tmp)
        tmp.replace(path)
    return summ, dh, ch


def _max_len(adapter, cap: int = 128) -> int:
    """Corpus texts are cut at the model's context (at most ``cap`` tokens)."""
    cfg = getattr(getattr(adapter, "model", None), "config", None)
    n = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
    return min(cap, int(n)) if n else cap


def _token_str(tok, i: int) -> str:
    return tok.decode([i]) if tok is not None else f"<{i}>"


DEFAULT_CORPUS_LINES = 512
"""Texts of the shipped corpus a card reads when none is given."""


def shipped_corpus_path() -> Path:
    """The shipped text corpus file (``acdc_tasks``' ``data/corpus.txt``, the one the shipped
    transcoders were trained on)."""
    import importlib.util

    spec = importlib.util.find_spec("acdc_tasks")
    path = None if spec is None or spec.origin is None else \
        Path(spec.origin).parent / "data" / "corpus.txt"
    if path is None or not path.is_file():
        raise AcdcError("no corpus given and the shipped one (acdc_tasks/data/corpus.txt) is "
                        "not installed: pass a corpus")
    return path


def default_corpus() -> list[str]:
    """The shipped text corpus (:func:`shipped_corpus_path`), its first
    :data:`DEFAULT_CORPUS_LINES` lines."""
    path = shipped_corpus_path()
    lines = [s for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
    return lines[:DEFAULT_CORPUS_LINES]


def feature_card(model, dictionary, layer: int, feature: int, corpus=None, *, k: int = 8,
                 context: int = 8, cache_dir=None) -> FeatureCard:
    """The card of feature ``feature`` of ``layer`` (see the module docstring): its ``k``
    top-activating contexts over ``corpus`` (``context`` tokens before the activating one and
    up to 2 after), its top ``k`` promoted and suppressed tokens, its density. ``model``: a
    LoadedModel (or an adapter: tokens are then shown as ids); ``corpus`` None: the shipped
    corpus (:func:`default_corpus`). ``cache_dir``: where the
    per-layer summaries go (default ``results/.cache/features``; False: no cache)."""
    adapter, tok = _adapter_tok(model)
    n = n_features(dictionary, layer)
    if not 0 <= feature < n:
        raise AcdcError(f"feature {feature} is not in layer {layer}'s {n} features")
    ids, lengths = corpus_ids(default_corpus() if corpus is None else corpus, tok,
                              max_len=_max_len(adapter))
    summ, dh, ch = _summary(model, dictionary, layer, ids, lengths, cache_dir)
    P = ids.shape[1]
    contexts = []
    for v, flat in zip(summ["values"][:, feature].tolist(), summ["indices"][:, feature].tolist()):
        if len(contexts) >= k or not v > 0:
            break
        ex, pos = divmod(int(flat), P)
        lo, hi = max(0, pos - context), min(int(lengths[ex]), pos + 3)
        toks = [_token_str(tok, int(t)) for t in ids[ex, lo:hi]]
        contexts.append(Context(float(v), toks, pos - lo, ex, pos))
    eff = logit_effects(model, dictionary, layer, feature).cpu()
    top, bot = eff.topk(k), (-eff).topk(k)
    promoted = [(_token_str(tok, i), float(eff[i])) for i in top.indices.tolist()]
    suppressed = [(_token_str(tok, i), float(eff[i])) for i in bot.indices.tolist()]
    count = int(summ["count"][feature])
    kind = getattr(dictionary, "kind", type(dictionary).__name__.lower())
    if isinstance(dictionary, Transcoders) and not hasattr(dictionary, "kind"):
        kind = "transcoder"
    best = float(summ["values"][0, feature])
    return FeatureCard(layer=layer, feature=feature, kind=str(kind), contexts=contexts,
                       promoted=promoted, suppressed=suppressed,
                       density=count / max(1, summ["n_tokens"]), n_tokens=summ["n_tokens"],
                       max_activation=max(best, 0.0),
                       mean_activation=float(summ["total"][feature]) / max(1, count),
                       dictionary_hash=dh, corpus_hash=ch)
