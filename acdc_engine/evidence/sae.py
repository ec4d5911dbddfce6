"""Sparse autoencoders on one layer's residual stream, spliced into the patched forward.

    sae = train_sae(problem, layer=1, n_features=64)      # on the task's clean activations
    st = sae_stats(problem, sae)                          # MSE, L0, metric with SAE spliced in
    top = top_activations(problem, sae, feature=3)        # its top activating tokens
    eff = feature_effects(problem, sae)                   # metric change per ablated feature
    att = feature_attribution(problem, sae)               # its gradient estimate, all features
    sae.save("sae.safetensors"); SAE.load("sae.safetensors")   # SAELens-style keys

The SAE reads the residual stream after layer ``layer`` (``layer = -1``: the embeddings):
``f = relu((x - b_dec) W_enc + b_enc)``, ``x_hat = f W_dec + b_dec``. Splicing replaces that
residual stream by ``x_hat`` for every reader above the layer through
:func:`acdc_engine.patching.run`: the ``input`` node's edges into those readers are removed and
its replacement carries ``embed + (x_hat - x)``, which adds exactly ``x_hat - x`` to each of
their inputs (the one patching mechanism).

Attribution of the metric to features comes two ways: :func:`feature_effects` zeroes (or
patches) one feature at a time in the spliced model (exact, one run per feature), and
:func:`feature_attribution` is its attribution-patching estimate for every feature at once,
``effect_i ~= dmetric/df_i * (f_i^src - f_i)`` summed over positions, from one forward and one
backward pass per batch: the gradient of the spliced run's reader inputs (the patched forward's
``grad_sink``) pulled back through the decoder.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import AcdcError
from ..features.dictionary import SAE as DictionarySAE
from ..features.formats import FORMAT, fill, save_dictionary
from ..patching import writer_outputs
from ..problem import Problem
from .descriptive import residual_stream

__all__ = ["SAE", "check_layer", "check_sae", "train_sae", "sae_stats", "SAEStats",
           "spliced_metric", "top_activations", "feature_effects", "feature_attribution",
           "FEATURE_SOURCES"]

FEATURE_SOURCES = ("zero", "corrupted")
"""What an ablated SAE feature's activation is replaced by."""


class SAE(DictionarySAE):
    """A sparse autoencoder of ``d_in`` inputs and ``n_features`` features: the dictionary
    :class:`acdc_engine.features.dictionary.SAE` (ReLU by default; topk and jumprelu too),
    with ``layer`` third and the decoder initialised as the encoder's transpose."""

    def __init__(self, d_in: int, n_features: int, layer: int = 0, activation: str = "relu",
                 k: int | None = None, model: str | None = None):
        super().__init__(d_in, n_features, None, layer, activation, k, model)
        with torch.no_grad():
            self.W_dec.copy_(self.W_enc.detach().T)

    @classmethod
    def identity(cls, d: int, layer: int = 0) -> SAE:
        """The dictionary ``[I, -I]``: ``relu(x) - relu(-x) = x``, an exact reconstruction."""
        sae = cls(d, 2 * d, layer)
        eye = torch.eye(d)
        with torch.no_grad():
            sae.W_enc.copy_(torch.cat([eye, -eye], 1))
            sae.W_dec.copy_(torch.cat([eye, -eye], 0))
            sae.b_enc.zero_()
            sae.b_dec.zero_()
        return sae

    def save(self, path: str | Path, figures: dict | None = None) -> Path:
        """safetensors with SAELens-style keys (W_enc [d_in, d_sae], W_dec [d_sae, d_in],
        b_enc, b_dec) and, in the metadata, the layer and the engine's dictionary config
        (:func:`acdc_engine.features.formats.save_dictionary`)."""
        return save_dictionary(self, path, figures)

    @classmethod
    def load(cls, path: str | Path, layer: int | None = None) -> SAE:
        """Weights in the common layout (W_enc, W_dec, b_enc, b_dec), e.g. a published SAE.
        A file that is missing, not safetensors, or not an SAE of consistent shapes is refused
        with an :class:`AcdcError` saying which."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.exists():
            raise AcdcError(f"SAE file '{path}' does not exist")
        if not path.is_file():
            raise AcdcError(f"SAE path '{path}' is not a file; expected a .safetensors file "
                            "with W_enc, W_dec, b_enc and b_dec")
        try:
            with safe_open(str(path), "pt") as f:
                w = {k: f.get_tensor(k) for k in f.keys()}
                meta = f.metadata() or {}
        except (SafetensorError, OSError, ValueError, RuntimeError) as e:
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise AcdcError(f"SAE file '{path}' is not a readable safetensors file "
                            f"({path.stat().st_size} bytes; {first})") from None
        missing = {"W_enc", "W_dec", "b_enc", "b_dec"} - set(w)
        if missing:
            raise AcdcError(f"{path} is not an SAE in the common layout: missing "
                            f"{', '.join(sorted(missing))}")
        shapes = {k: tuple(w[k].shape) for k in ("W_enc", "W_dec", "b_enc", "b_dec")}
        if len(shapes["W_enc"]) != 2:
            raise AcdcError(f"{path}: W_enc must be [d_in, n_features], got {shapes['W_enc']}")
        d, m = shapes["W_enc"]
        want = {"W_enc": (d, m), "W_dec": (m, d), "b_enc": (m,), "b_dec": (d,)}
        bad = [f"{k} {shapes[k]} (expected {want[k]})" for k in want if shapes[k] != want[k]]
        if bad:
            raise AcdcError(f"{path} is not a consistent SAE: W_enc is {shapes['W_enc']}, so "
                            f"{'; '.join(bad)}")
        if layer is None:
            try:
                layer = int(meta.get("layer", 0))
            except ValueError:
                raise AcdcError(f"{path}: its metadata names layer {meta['layer']!r}, not a "
                                "number; pass the layer") from None
        config = _engine_config(meta)
        if config.get("activation", "relu") != "relu":  # a topk / jumprelu SAE of the engine
            sae = cls(d, m, layer, config["activation"], config.get("k"), config.get("model"))
            fill(sae, w, path)
            return sae
        sae = cls(d, m, layer, model=config.get("model"))
        sae.load_state_dict({k: w[k].float() for k in ("W_enc", "b_enc", "W_dec", "b_dec")})
        return sae


def _engine_config(meta: dict) -> dict:
    """The engine's dictionary config in a file's metadata (empty if none or broken)."""
    try:
        config = json.loads(meta.get("config") or "{}") if meta.get("format") == FORMAT else {}
    except ValueError:
        return {}
    return config if isinstance(config, dict) and config.get("kind") == "sae" else {}


def check_layer(problem: Problem, layer: int) -> None:
    """Refuse a ``layer`` the model does not have (-1 is the embeddings)."""
    n = problem.graph.n_layers
    if not (isinstance(layer, int) and -1 <= layer < n):
        raise AcdcError(f"layer {layer} is not in model {problem.model.id!r}, which has {n} "
                        f"layers: use 0 to {n - 1} (the residual stream after that layer) or "
                        "-1 (the embeddings)")


def check_sae(problem: Problem, sae: SAE) -> None:
    """Refuse an SAE whose layer or width does not fit ``problem``'s model."""
    check_layer(problem, sae.layer)
    d, d_model = sae.W_enc.shape[0], problem.model.adapter.d_model
    if d != d_model:
        raise AcdcError(f"the SAE reads {d}-dimensional activations (W_enc is "
                        f"{list(sae.W_enc.shape)}), but model {problem.model.id!r} has a "
                        f"{d_model}-dimensional residual stream: it was made for another model")


def _acts(problem: Problem, layer: int, which: str = "clean") -> list[torch.Tensor]:
    """The residual stream after ``layer`` for each batch (clean or corrupted prompts):
    [b, p, d]."""
    check_layer(problem, layer)
    return [residual_stream(problem.model, getattr(b, which))[layer + 1]
            for b in problem.batches]


def _splice_mask(problem: Problem, layer: int) -> tuple[torch.Tensor, int]:
    """The mask that removes the ``input`` node's edges into every reader above ``layer``,
    and the first such reader slot."""
    model, g = problem.model, problem.graph
    check_layer(problem, layer)
    first = (layer + 1) * g.readers_per_layer  # the first reader slot above the layer
    mask = torch.ones(g.n_writers, g.n_readers, device=model.device, dtype=model.dtype)
    mask[0, first:] = 0
    return mask, first


def train_sae(problem: Problem, layer: int, n_features: int = 64, l1: float = 1e-3,
              steps: int = 2000, lr: float = 3e-3, seed: int = 0) -> SAE:
    """Train an SAE on the residual stream after ``layer`` at every position of the task's
    clean prompts: MSE plus ``l1`` (>= 0) times the features' L1 norm (scaled by the decoder
    norms)."""
    if not (math.isfinite(l1) and l1 >= 0):
        raise AcdcError(f"the L1 penalty must be a finite number >= 0, got {l1}: a negative one "
                        "rewards dense features")
    torch.manual_seed(seed)
    x = torch.cat([a.reshape(-1, a.shape[-1]) for a in _acts(problem, layer)]).float().cpu()
    sae = SAE(x.shape[1], n_features, layer)
    with torch.no_grad():
        sae.b_dec.copy_(x.mean(0))
    opt = torch.optim.Adam(sae.parameters(), lr=lr)
    scale = x.var(0).sum()  # normalize the loss so l1 means the same at any scale
    for _ in range(steps):
        f = sae.encode(x)
        loss = ((sae.decode(f) - x) ** 2).sum(-1).mean() / scale + l1 * (
            f * sae.W_dec.norm(dim=1)).sum(-1).mean() / scale**0.5
        opt.zero_grad()
        loss.backward()
        opt.step()
    return sae.eval()


@torch.no_grad()
def spliced_metric(problem: Problem, sae: SAE, edit=None) -> torch.Tensor:
    """Per-example metric with the SAE's reconstruction spliced in after its layer:
    ``[n_examples]``. ``edit(f) -> f`` changes the features first (e.g. ablates one)."""
    return _spliced(problem, sae, None if edit is None else lambda f, i: edit(f))


@torch.no_grad()
def _spliced(problem: Problem, sae: SAE, edit=None) -> torch.Tensor:
    """:func:`spliced_metric` with ``edit(f, i)`` told the batch index ``i``."""
    check_sae(problem, sae)
    model = problem.model
    mask, _ = _splice_mask(problem, sae.layer)
    sae = sae.to(model.device, model.dtype)
    out = []
    for i, (b, x) in enumerate(zip(problem.batches, _acts(problem, sae.layer))):
        acts = writer_outputs(model.adapter, b.clean)  # [W, b, p, d]
        f = sae.encode(x)
        x_hat = sae.decode(edit(f, i) if edit is not None else f)
        ablated = acts.clone()
        ablated[0] = acts[0] + (x_hat - x)
        out.append(problem.score(b, mask, ablated).float().cpu())
    return torch.cat(out)


@dataclass
class SAEStats:
    """Reconstruction MSE (and as a share of the activations' variance), mean L0 (active
    features per token), and the mean metric clean and with the SAE spliced in."""

    mse: float
    fraction_unexplained: float
    l0: float
    metric_clean: float
    metric_spliced: float

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@torch.no_grad()
def sae_stats(problem: Problem, sae: SAE) -> SAEStats:
    """How well ``sae`` reconstructs its layer's activations on the problem's prompts: fraction
    of variance unexplained, mean L0, dead features (:class:`SAEStats`)."""
    check_sae(problem, sae)
    x = torch.cat([a.reshape(-1, a.shape[-1]) for a in _acts(problem, sae.layer)]).float()
    sae = sae.to(x.device, x.dtype)
    f = sae.encode(x)
    err = ((sae.decode(f) - x) ** 2).sum(-1).mean()
    var = ((x - x.mean(0)) ** 2).sum(-1).mean()
    clean = torch.cat([problem.score(b).float().cpu() for b in problem.batches])
    return SAEStats(float(err), float(err / var), float((f > 0).float().sum(-1).mean()),
                    float(clean.mean()), float(spliced_metric(problem, sae).mean()))


@torch.no_grad()
def top_activations(problem: Problem, sae: SAE, feature: int, k: int = 5,
                    context: int = 3) -> list[tuple[float, str]]:
    """The ``k`` tokens (with ``context`` tokens before them) that activate ``feature`` most."""
    check_sae(problem, sae)
    tok = problem.model.tokenizer
    found = []
    for b, x in zip(problem.batches, _acts(problem, sae.layer)):
        a = sae.to(x.device, x.dtype).encode(x)[..., feature]  # [b, p]
        for i, p in zip(*torch.nonzero(a > 0, as_tuple=True)):
            ids = b.clean[i, max(0, p - context) : p + 1].tolist()
            text = tok.decode(ids) if tok is not None else " ".join(map(str, ids))
            found.append((float(a[i, p]), text))
    return sorted(found, key=lambda t: -t[0])[:k]


def _sources(problem: Problem, sae: SAE, source: str) -> list[torch.Tensor] | None:
    """Per batch, the features that replace ablated ones: the corrupted prompts' [b, p, F]
    (None: zero)."""
    if source not in FEATURE_SOURCES:
        raise AcdcError(f"unknown feature source {source!r} (use {', '.join(FEATURE_SOURCES)})")
    if source == "zero":
        return None
    with torch.no_grad():
        return [sae.to(x.device, x.dtype).encode(x) for x in _acts(problem, sae.layer,
                                                                     "corrupted")]


def feature_effects(problem: Problem, sae: SAE, features: list[int] | None = None,
                    top: int = 16, source: str = "zero") -> dict[int, float]:
    """Mean metric change when one feature is zeroed (``source="corrupted"``: set to its value
    on the corrupted prompt) in the spliced reconstruction, for ``features`` (default: the
    ``top`` features with the largest mean activation). Exact: one spliced run per feature;
    :func:`feature_attribution` estimates all of them from one."""
    check_sae(problem, sae)
    if features is None:
        x = torch.cat([a.reshape(-1, a.shape[-1]) for a in _acts(problem, sae.layer)]).float()
        mean = sae.to(x.device, x.dtype).encode(x).mean(0)
        features = mean.argsort(descending=True)[:top].tolist()
    src = _sources(problem, sae, source)
    base = spliced_metric(problem, sae)
    out = {}
    for j in features:
        def patch(f, i, j=j):
            f = f.clone()
            f[..., j] = 0 if src is None else src[i][..., j]
            return f
        out[j] = float((_spliced(problem, sae, patch) - base).mean())
    return out


def feature_attribution(problem: Problem, sae: SAE, source: str = "zero") -> torch.Tensor:
    """Attribution-patching estimate of every feature's effect on the metric: ``[n_features]``,
    mean over examples, comparable with :func:`feature_effects` (same ``source``).

    ``effect_i ~= sum_pos dmetric/df_i * (f_i^src - f_i)`` with the SAE spliced in, ``f^src``
    zero or the corrupted prompt's features. The spliced residual stream ``x_hat`` is read by
    every reader above the layer, so ``dmetric/dx_hat`` is the sum of those readers' input
    gradients, which the patched forward collects in its ``grad_sink`` (one forward and one
    backward per batch); ``dmetric/df = dmetric/dx_hat @ W_dec^T``. Exact when the metric is
    linear in ``x_hat`` (e.g. no final norm, the SAE on the last layer, logit difference).
    Memory: the sink holds ``n_readers x batch x pos x d_model`` values per batch."""
    check_sae(problem, sae)
    model, g = problem.model, problem.graph
    if not problem.metric.differentiable:
        raise AcdcError(f"metric {problem.metric.name!r} is not differentiable: use "
                        "feature_effects (exact) instead")
    mask, first = _splice_mask(problem, sae.layer)
    mask.requires_grad_(True)
    sae = sae.to(model.device, model.dtype)
    src = _sources(problem, sae, source)
    total = torch.zeros(sae.W_enc.shape[1], dtype=torch.float64)
    for i, (b, x) in enumerate(zip(problem.batches, _acts(problem, sae.layer))):
        with torch.no_grad():
            acts = writer_outputs(model.adapter, b.clean)  # [W, b, p, d]
            f = sae.encode(x)  # [b, p, F]
            ablated = acts.clone()
            ablated[0] = acts[0] + (sae.decode(f) - x)
        sink = torch.zeros(g.n_readers, *x.shape, device=x.device, dtype=x.dtype)
        torch.autograd.grad(problem.score(b, mask, ablated, grad_sink=sink).sum(), mask,
                            allow_unused=True)
        with torch.no_grad():
            grad_x = sink[first:].sum(0)  # [b, p, d]: dmetric/dx_hat, every reader above
            grad_f = grad_x @ sae.W_dec.T  # [b, p, F]
            step = -f if src is None else src[i] - f
            total += (grad_f * step).sum((0, 1)).double().cpu()
    return (total / problem.n_examples).float()
