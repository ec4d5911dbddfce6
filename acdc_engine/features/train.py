"""Train dictionaries on a model's activations over a text corpus: SAEs, per-layer transcoders
(a :class:`~.dictionary.TranscoderSet`) and cross-layer transcoders.

    acts = collect(model, read_corpus("corpus.txt"), site="mlp")   # every layer's MLP in/out
    tc = train(acts, TrainConfig(kind="transcoder", activation="relu", n_features=512))

Activations come from the engine's own forward (:func:`acdc_engine.patching.writer_outputs`),
generic over model families through the adapter: a transcoder's input is what layer ``l``'s
MLP module receives (after its norm), read with a forward pre-hook on
``adapter.mlp_module(l)`` (families that predate it: the parent module of
``adapter.mlp_out_proj(l)``); its target is the MLP node's output, the writer ``m{l}``'s row of
``writer_outputs`` (so a post-norm, as in Gemma, is part of what it predicts). An SAE reads the
residual stream after its layer (:func:`acdc_engine.evidence.descriptive.residual_stream`).

Loss per token: the squared reconstruction error over the target's variance (so it is the
fraction of variance unexplained on average) plus a sparsity term:

* ``relu``: ``l1 * sum_i f_i ||W_dec_i|| / sqrt(var)`` (L1 scaled by the decoder norms, so
  shrinking the encoder cannot dodge it; a cross-layer feature's norm is over all the layers it
  writes to);
* ``topk``: none (exactly ``k`` features are active);
* ``jumprelu``: ``l0 * sum_i H(pre_i - threshold_i)``, the L0 norm, with the JumpReLU paper's
  straight-through estimator (Rajamanoharan et al. 2024): the step's derivative with respect to
  the threshold is ``-K((pre - threshold) / eps) / eps`` with the rectangle kernel ``K``, and
  ``jumprelu``'s own derivative with respect to the threshold ``-threshold/eps K(...)``;
  ``eps`` is ``bandwidth`` times the pre-activations' standard deviation at initialisation.

Adam, minibatches drawn from a generator seeded with ``seed`` (the whole run is deterministic
given the seed, on one thread), a ``tqdm`` bar per dictionary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import AcdcError, UnsupportedModelError
from ..progress import progress_bar
from .dictionary import (ACTIVATIONS, SAE, CrossLayerTranscoder, Dictionary, Transcoder,
                         TranscoderSet, activate)

__all__ = ["KINDS", "Activations", "TrainConfig", "read_corpus", "tokenize", "collect",
           "train", "mlp_module", "context_length", "jumprelu_ste", "step_ste"]

KINDS = ("sae", "transcoder", "clt")
"""What :func:`train` trains: an SAE on one layer's residual stream, per-layer transcoders, or
a cross-layer transcoder."""


@dataclass
class Activations:
    """Per layer, a dictionary's inputs ``x[l]`` and targets ``y[l]`` ([tokens, d], float32):
    ``site`` ``"mlp"`` (MLP input after its norm -> MLP output) or ``"resid"`` (the residual
    stream after the layer, both); ``layers``: which layers (``x`` is indexed like it)."""

    x: list[torch.Tensor]
    y: list[torch.Tensor]
    site: str
    layers: list[int]
    model: str | None = None
    n_tokens: int = 0


@dataclass
class TrainConfig:
    """What to train. ``sparsity``: the L1 coefficient (relu) or L0 coefficient (jumprelu);
    ignored by topk. ``layer``: an SAE's layer (the residual stream after it). ``bandwidth``:
    the JumpReLU estimator's kernel width, relative to the pre-activations' spread.
    ``progress``: a progress bar per dictionary. ``history``: filled with the losses."""

    kind: str = "transcoder"
    activation: str = "relu"
    n_features: int = 512
    k: int | None = None
    layer: int = 0
    steps: int = 1000
    lr: float = 3e-3
    batch_size: int = 1024
    sparsity: float = 1e-3
    bandwidth: float = 0.05
    seed: int = 0
    progress: bool = True
    history: list = field(default_factory=list)

    def check(self) -> None:
        """Refuse settings that cannot train (one line)."""
        if self.kind not in KINDS:
            raise AcdcError(f"unknown dictionary kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.activation not in ACTIVATIONS:
            raise AcdcError(f"unknown activation {self.activation!r}; use one of "
                            f"{', '.join(ACTIVATIONS)}")
        if self.activation == "topk" and not (self.k and 0 < self.k <= self.n_features):
            raise AcdcError(f"topk needs --k in 1..{self.n_features}, got {self.k}")
        if not (math.isfinite(self.sparsity) and self.sparsity >= 0):
            raise AcdcError(f"the sparsity coefficient must be finite and >= 0, got "
                            f"{self.sparsity}")
        for name in ("n_features", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise AcdcError(f"{name} must be at least 1, got {getattr(self, name)}")


# ----- the corpus and the activations -------------------------------------------------------
def read_corpus(path: str | Path) -> list[str]:
    """The non-empty lines of a text file (one text per line)."""
    path = Path(path)
    if not path.is_file():
        raise AcdcError(f"corpus file '{path}' does not exist")
    lines = [s for s in path.read_text(encoding="utf-8").splitlines() if s.strip()]
    if not lines:
        raise AcdcError(f"corpus file '{path}' holds no text")
    return lines


def tokenize(tokenizer, texts: list[str], max_len: int = 64, bos: bool = False) -> list[list[int]]:
    """Token ids per text (no special tokens; ``bos``: the tokenizer's BOS first), cut at
    ``max_len``."""
    warned = getattr(tokenizer, "deprecation_warnings", None)
    if isinstance(warned, dict):  # texts longer than the context are cut below
        warned["sequence-length-is-longer-than-the-specified-maximum"] = True
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    first = [tokenizer.bos_token_id] if bos else []
    if bos and tokenizer.bos_token_id is None:
        raise AcdcError("the tokenizer has no BOS token to prepend")
    return [(first + list(x))[:max_len] for x in ids if x]


def context_length(model) -> int | None:
    """The model's context length (``n_positions`` or ``max_position_embeddings``), if known."""
    config = getattr(getattr(model, "hf", None), "config", None)
    return getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings",
                                                           None)


def mlp_module(adapter, layer: int) -> torch.nn.Module:
    """The module whose first input is layer ``layer``'s MLP input after its norm:
    ``adapter.mlp_module(layer)``, else the parent of ``adapter.mlp_out_proj(layer)``."""
    try:
        return adapter.mlp_module(layer)
    except (AttributeError, UnsupportedModelError):  # a family without it: its parent module
        pass
    proj = adapter.mlp_out_proj(layer)
    for module in adapter.model.modules():
        if any(child is proj for child in module.children()):
            return module
    raise AcdcError(f"cannot find layer {layer}'s MLP module in {type(adapter.model).__name__}")


@torch.no_grad()
def collect(model, texts: list[str], site: str = "mlp", layers: list[int] | None = None,
            max_len: int = 64, bos: bool = False, batch_size: int = 64) -> Activations:
    """Run ``model`` (a ``LoadedModel``) over ``texts`` and keep each token's activations at
    ``site`` (``"mlp"``: MLP input after its norm and MLP output; ``"resid"``: the residual
    stream after the layer) for ``layers`` (default all). Padding, and the BOS position when
    ``bos``, are left out."""
    from ..evidence.descriptive import residual_stream
    from ..patching import writer_outputs

    if site not in ("mlp", "resid"):
        raise AcdcError(f"site must be 'mlp' or 'resid', got {site!r}")
    adapter, g = model.adapter, model.graph
    if site == "mlp" and g.attn_only:
        raise AcdcError(f"model {model.id!r} has no MLPs to train transcoders on")
    layers = list(range(g.n_layers)) if layers is None else list(layers)
    max_len = min(max_len, context_length(model) or max_len)
    seqs = sorted(tokenize(model.tokenizer, texts, max_len, bos), key=len)
    pad = model.tokenizer.pad_token_id or 0
    xs, ys = [[] for _ in layers], [[] for _ in layers]
    caught: dict[int, torch.Tensor] = {}
    hooks = []
    if site == "mlp":
        for i, layer in enumerate(layers):
            hooks.append(mlp_module(adapter, layer).register_forward_pre_hook(
                lambda mod, args, i=i: caught.__setitem__(i, args[0].detach())))
    try:
        for s in range(0, len(seqs), batch_size):
            chunk = seqs[s:s + batch_size]
            width = max(map(len, chunk))
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            keep = torch.zeros(len(chunk), width, dtype=torch.bool)  # [b, p]
            for r, x in enumerate(chunk):
                ids[r, :len(x)] = torch.tensor(x)
                keep[r, int(bos):len(x)] = True
            ids = ids.to(model.device)
            if site == "mlp":
                caught.clear()
                out = writer_outputs(adapter, ids)  # [W, b, p, d]
                for i, layer in enumerate(layers):
                    xs[i].append(caught[i][keep].float().cpu())
                    ys[i].append(out[g.writer_index(f"m{layer}")][keep].float().cpu())
            else:
                resid = residual_stream(model, ids)  # [L + 1, b, p, d]
                for i, layer in enumerate(layers):
                    xs[i].append(resid[layer + 1][keep].float().cpu())
    finally:
        for h in hooks:
            h.remove()
    x = [torch.cat(a) for a in xs]
    y = [torch.cat(a) for a in ys] if site == "mlp" else x
    return Activations(x, y, site, layers, model.id, int(x[0].shape[0]))


# ----- the estimators -----------------------------------------------------------------------
def _kernel(u: torch.Tensor) -> torch.Tensor:
    """The rectangle kernel: 1 on (-1/2, 1/2)."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, threshold, eps):
        ctx.save_for_backward(pre, threshold)
        ctx.eps = eps
        return pre * (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, g):
        pre, th = ctx.saved_tensors
        d_th = -(th / ctx.eps) * _kernel((pre - th) / ctx.eps) * g
        return (pre > th).to(pre.dtype) * g, d_th.reshape(-1, th.shape[-1]).sum(0), None


class _Step(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre, threshold, eps):
        ctx.save_for_backward(pre, threshold)
        ctx.eps = eps
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, g):
        pre, th = ctx.saved_tensors
        d_th = -(1.0 / ctx.eps) * _kernel((pre - th) / ctx.eps) * g
        return None, d_th.reshape(-1, th.shape[-1]).sum(0), None


def jumprelu_ste(pre: torch.Tensor, threshold: torch.Tensor, eps: float) -> torch.Tensor:
    """``pre * (pre > threshold)`` whose gradient reaches ``threshold`` (the paper's STE)."""
    return _JumpReLU.apply(pre, threshold, eps)


def step_ste(pre: torch.Tensor, threshold: torch.Tensor, eps: float) -> torch.Tensor:
    """``H(pre - threshold)`` (the L0 count) whose gradient reaches ``threshold``."""
    return _Step.apply(pre, threshold, eps)


# ----- training -----------------------------------------------------------------------------
class _Term:
    """One layer's part of the loss: activations of pre-activations, the sparsity term."""

    def __init__(self, cfg: TrainConfig, threshold: torch.Tensor | None, eps: float):
        self.cfg, self.threshold, self.eps = cfg, threshold, eps

    def acts(self, pre: torch.Tensor) -> torch.Tensor:
        if self.cfg.activation == "jumprelu":
            return jumprelu_ste(pre, self.threshold, self.eps)
        return activate(pre, self.cfg.activation, self.cfg.k)

    def sparsity(self, pre, acts, dec_norm, scale) -> torch.Tensor:
        if self.cfg.activation == "relu":
            return self.cfg.sparsity * (acts * dec_norm).sum(-1).mean() / scale**0.5
        if self.cfg.activation == "jumprelu":
            return self.cfg.sparsity * step_ste(pre, self.threshold, self.eps).sum(-1).mean()
        return pre.new_zeros(())


def _variance(y: torch.Tensor) -> torch.Tensor:
    """Total variance of ``y`` [N, d] (summed over dimensions), at least a tiny positive."""
    return ((y - y.mean(0)) ** 2).sum(-1).mean().clamp_min(1e-12)


def _init(pre_fn, x: torch.Tensor, threshold: torch.Tensor | None, cfg: TrainConfig) -> float:
    """Set a JumpReLU threshold to a tenth of the pre-activations' spread; return the
    estimator's bandwidth (``bandwidth`` times that spread)."""
    with torch.no_grad():
        spread = float(pre_fn(x[:4096]).std()) or 1.0
        if threshold is not None:
            threshold.fill_(0.1 * spread)
    return cfg.bandwidth * spread


def _fit(module, params, loss_fn, cfg: TrainConfig, n: int, thresholds, desc: str) -> list:
    """Adam over minibatches of ``n`` tokens; thresholds kept positive. Returns the losses."""
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    losses = []
    for step in progress_bar(range(cfg.steps), desc=desc, enabled=cfg.progress):
        idx = torch.randint(n, (min(cfg.batch_size, n),), generator=gen)
        loss = loss_fn(idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for th in thresholds:
                th.clamp_(min=1e-6)
        if step % 50 == 0 or step == cfg.steps - 1:
            losses.append(round(float(loss.detach()), 6))
    return losses


def _train_one(d: Dictionary, x: torch.Tensor, y: torch.Tensor, cfg: TrainConfig) -> Dictionary:
    """Fit one SAE or transcoder ``d`` to map ``x`` to ``y``."""
    with torch.no_grad():
        d.b_dec.copy_(y.mean(0))
    eps = _init(d.pre_acts, x, d.threshold, cfg)
    term, scale = _Term(cfg, d.threshold, eps), _variance(y)

    def loss_fn(idx):
        pre = d.pre_acts(x[idx])
        acts = term.acts(pre)
        err = ((d.decode(acts) - y[idx]) ** 2).sum(-1).mean() / scale
        return err + term.sparsity(pre, acts, d.W_dec.norm(dim=1), scale)

    ths = [d.threshold] if d.threshold is not None else []
    cfg.history.append(_fit(d, list(d.parameters()), loss_fn, cfg, x.shape[0], ths,
                            f"{d.kind} layer {d.layer}"))
    return d.eval()


def _train_clt(clt: CrossLayerTranscoder, acts: Activations, cfg: TrainConfig):
    """Fit a cross-layer transcoder: every layer's MLP output from the features of that layer
    and the layers before it."""
    L = clt.n_layers
    with torch.no_grad():
        for j in range(L):
            clt.b_dec_all[j].copy_(acts.y[j].mean(0))
    eps = [_init(lambda x, i=i: clt.pre_acts(i, x), acts.x[i],
                 None if clt.threshold is None else clt.threshold[i], cfg) for i in range(L)]
    scales = [_variance(y) for y in acts.y]

    def loss_fn(idx):
        terms = [_Term(cfg, None if clt.threshold is None else clt.threshold[i], eps[i])
                 for i in range(L)]
        pres = [clt.pre_acts(i, acts.x[i][idx]) for i in range(L)]
        fs = [t.acts(p) for t, p in zip(terms, pres)]
        loss = sum(((clt.decode(j, fs) - acts.y[j][idx]) ** 2).sum(-1).mean() / scales[j]
                   for j in range(L))
        mean_scale = sum(scales) / L
        for i in range(L):
            norm = clt.W_dec[i].flatten(1).norm(dim=1)  # [n]: over every layer it writes to
            loss = loss + terms[i].sparsity(pres[i], fs[i], norm, mean_scale)
        return loss

    ths = [clt.threshold] if clt.threshold is not None else []
    cfg.history.append(_fit(clt, list(clt.parameters()), loss_fn, cfg, acts.n_tokens, ths,
                            "clt"))
    return clt.eval()


def train(acts: Activations, cfg: TrainConfig):
    """A dictionary of ``cfg.kind`` trained on ``acts`` (from :func:`collect`: ``site="resid"``
    for an SAE, ``"mlp"`` for transcoders): an :class:`SAE` of ``cfg.layer``, a
    :class:`TranscoderSet` over ``acts.layers`` (which must be 0..L-1), or a
    :class:`CrossLayerTranscoder`. The losses every 50 steps go to ``cfg.history``."""
    cfg.check()
    want = "resid" if cfg.kind == "sae" else "mlp"
    if acts.site != want:
        raise AcdcError(f"a {cfg.kind} trains on site {want!r} activations, got {acts.site!r}")
    torch.manual_seed(cfg.seed)
    kw = dict(activation=cfg.activation, k=cfg.k, model=acts.model)
    if cfg.kind == "sae":
        if cfg.layer not in acts.layers:
            raise AcdcError(f"no activations for layer {cfg.layer} (collected: {acts.layers})")
        i = acts.layers.index(cfg.layer)
        sae = SAE(acts.x[i].shape[1], cfg.n_features, layer=cfg.layer, **kw)
        return _train_one(sae, acts.x[i], acts.x[i], cfg)
    if acts.layers != list(range(len(acts.layers))):
        raise AcdcError(f"transcoders need every layer 0..L-1, got layers {acts.layers}")
    d = acts.x[0].shape[1]
    if cfg.kind == "clt":
        clt = CrossLayerTranscoder(len(acts.layers), d, cfg.n_features, **kw)
        return _train_clt(clt, acts, cfg)
    out = []
    for i in acts.layers:
        torch.manual_seed(cfg.seed + i)
        tc = Transcoder(d, cfg.n_features, layer=i, **kw)
        out.append(_train_one(tc, acts.x[i], acts.y[i], cfg))
    return TranscoderSet(out)
