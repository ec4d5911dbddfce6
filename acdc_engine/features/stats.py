"""The training figures of a dictionary: how well it reconstructs, how sparse it is, and what
the model does with it spliced in.

    figs = reconstruction_figures(transcoders, acts)       # per layer: FVU, L0, dead features
    loss = next_token_loss(model, texts, transcoders)       # spliced in, no error term
    clean, spliced = task_metric(problem, transcoders)      # the task's metric, both ways

* fraction of variance unexplained (FVU): ``sum |y_hat - y|^2 / sum |y - mean(y)|^2`` over the
  tokens, per layer (a cross-layer transcoder's ``y_hat`` of layer ``j`` sums the features of
  layers ``<= j``);
* L0: the mean number of active features per token; dead: the share of features never active
  on any token of the sample;
* spliced: transcoders replace every MLP with no error term
  (:func:`acdc_engine.features.splice.spliced_run` with ``errors=False``), an SAE's
  reconstruction replaces the residual stream after its layer (:func:`sae_logits`): the
  next-token cross-entropy next to the model's own, and the task metric.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch

from .dictionary import Dictionary, Transcoders
from .train import Activations, context_length, tokenize

__all__ = ["LayerFigures", "Figures", "reconstruction_figures", "next_token_loss",
           "task_metric", "figures", "sae_logits"]


@dataclass
class LayerFigures:
    """One layer's reconstruction figures: FVU, mean L0, share of dead features."""

    layer: int
    fvu: float
    l0: float
    dead: float
    n_features: int


@dataclass
class Figures:
    """A dictionary's figures: per layer, their means, and (when measured) the next-token loss
    of the model and of the replacement model (no error term), and the task metric clean and
    spliced."""

    layers: list[LayerFigures] = field(default_factory=list)
    n_tokens: int = 0
    loss_clean: float | None = None
    loss_spliced: float | None = None
    metric_clean: float | None = None
    metric_spliced: float | None = None

    @property
    def fvu(self) -> float:
        """Mean FVU over layers."""
        return sum(f.fvu for f in self.layers) / max(1, len(self.layers))

    @property
    def l0(self) -> float:
        """Mean L0 over layers."""
        return sum(f.l0 for f in self.layers) / max(1, len(self.layers))

    @property
    def dead(self) -> float:
        """Mean share of dead features over layers."""
        return sum(f.dead for f in self.layers) / max(1, len(self.layers))

    def as_dict(self) -> dict:
        """Plain numbers (JSON, MLflow): the means first, then each layer's."""
        out = {"fvu": self.fvu, "l0": self.l0, "dead": self.dead, "n_tokens": self.n_tokens}
        out.update({k: v for k, v in (("loss_clean", self.loss_clean),
                                      ("loss_spliced", self.loss_spliced),
                                      ("metric_clean", self.metric_clean),
                                      ("metric_spliced", self.metric_spliced)) if v is not None})
        out["layers"] = [asdict(f) for f in self.layers]
        return out


def _layer_figures(layer: int, y: torch.Tensor, y_hat: torch.Tensor,
                   acts: torch.Tensor) -> LayerFigures:
    """Figures from targets ``y``, reconstructions ``y_hat`` [N, d] and activations [N, n]."""
    y64, err = y.double(), (y_hat.double() - y.double())
    var = ((y64 - y64.mean(0)) ** 2).sum()
    active = acts > 0
    return LayerFigures(layer, float((err**2).sum() / var.clamp_min(1e-300)),
                        float(active.sum(-1).double().mean()),
                        float((~active.any(0)).double().mean()), int(acts.shape[-1]))


@torch.no_grad()
def reconstruction_figures(dictionary: Dictionary | Transcoders, acts: Activations,
                           chunk: int = 8192) -> list[LayerFigures]:
    """FVU, L0 and dead features of ``dictionary`` on ``acts`` (from
    :func:`~acdc_engine.features.train.collect`), per layer it covers."""
    if isinstance(dictionary, Dictionary):
        i = acts.layers.index(dictionary.layer)
        x, y = acts.x[i], acts.y[i]
        f = torch.cat([dictionary.encode(x[s:s + chunk]) for s in range(0, len(x), chunk)])
        return [_layer_figures(dictionary.layer, y, dictionary.decode(f), f)]
    L = dictionary.n_layers
    fs = [torch.cat([dictionary.encode(i, acts.x[i][s:s + chunk])
                     for s in range(0, acts.n_tokens, chunk)]) for i in range(L)]
    return [_layer_figures(j, acts.y[j], dictionary.decode(j, fs), fs[j]) for j in range(L)]


def _batches(model, texts: list[str], max_len: int, batch_size: int):
    """Right-padded ids [b, p] and a mask of the positions whose next token is real."""
    max_len = min(max_len, context_length(model) or max_len)
    seqs = sorted(tokenize(model.tokenizer, texts, max_len), key=len)
    pad = model.tokenizer.pad_token_id or 0
    for s in range(0, len(seqs), batch_size):
        chunk = seqs[s:s + batch_size]
        ids = torch.full((len(chunk), max(map(len, chunk))), pad, dtype=torch.long)
        real = torch.zeros_like(ids, dtype=torch.bool)
        for r, x in enumerate(chunk):
            ids[r, :len(x)] = torch.tensor(x)
            real[r, :len(x)] = True
        yield ids.to(model.device), real.to(model.device)


def sae_logits(model, ids: torch.Tensor, sae: Dictionary) -> torch.Tensor:
    """Logits [b, p, vocab] with ``sae``'s reconstruction in place of the residual stream after
    its layer, for every reader above it: as :mod:`acdc_engine.evidence.sae` splices, the
    ``input`` node's edges into those readers are removed and its replacement carries
    ``embed + (x_hat - x)``."""
    from ..evidence.descriptive import residual_stream
    from ..patching import ALL, PatchPlan, run, writer_outputs

    g = model.graph
    acts = writer_outputs(model.adapter, ids)  # [W, b, p, d]
    x = residual_stream(model, ids)[sae.layer + 1]  # [b, p, d]
    mask = torch.ones(g.n_writers, g.n_readers, device=ids.device, dtype=acts.dtype)
    mask[0, (sae.layer + 1) * g.readers_per_layer:] = 0
    ablated = acts.clone()
    ablated[0] = acts[0] + (sae(x) - x)
    return run(model.adapter, ids, PatchPlan(mask=mask, ablated=ablated), ALL)


@torch.no_grad()
def next_token_loss(model, texts: list[str], dictionary=None, max_len: int = 64,
                    batch_size: int = 64) -> float:
    """Mean next-token cross-entropy over ``texts`` (every position with a real next token):
    the model's own (``dictionary`` None), the replacement model's (transcoders: every MLP
    replaced, no error term), or with an SAE's reconstruction spliced in (:func:`sae_logits`)."""
    from ..patching import ALL, NO_PATCH, run

    total, n = 0.0, 0
    for ids, real in _batches(model, texts, max_len, batch_size):
        if dictionary is None:
            logits = run(model.adapter, ids, NO_PATCH, ALL)
        elif isinstance(dictionary, Dictionary):
            logits = sae_logits(model, ids, dictionary)
        else:
            from .splice import spliced_run

            logits = spliced_run(model.adapter, ids, dictionary, errors=False).logits
        logits = logits.float()[:, :-1]  # [b, p-1, vocab]
        keep = real[:, 1:]
        ce = torch.nn.functional.cross_entropy(logits[keep], ids[:, 1:][keep], reduction="sum")
        total, n = total + float(ce), n + int(keep.sum())
    return total / max(1, n)


@torch.no_grad()
def task_metric(problem, transcoders: Transcoders) -> tuple[float, float]:
    """The task's mean metric over ``problem``'s clean prompts: the model's own and with
    ``transcoders`` replacing every MLP (no error term)."""
    from ..patching.plan import ReadOut
    from .splice import spliced_run

    clean, spliced = [], []
    for b in problem.batches:
        clean.append(problem.score(b).float().cpu())
        logits = spliced_run(problem.model.adapter, b.clean, transcoders, errors=False,
                             readout=ReadOut.of(b)).logits
        spliced.append(problem.metric.score(logits, b).float().cpu())
    return float(torch.cat(clean).mean()), float(torch.cat(spliced).mean())


def figures(dictionary, acts: Activations, model=None, texts: list[str] | None = None,
            problem=None) -> Figures:
    """All the figures that apply: reconstruction always; with ``model`` and ``texts`` and a
    set of transcoders or an SAE, the next-token losses; with ``problem``, the task metric (an SAE
    spliced into the residual stream by :func:`acdc_engine.evidence.sae.spliced_metric`)."""
    out = Figures(reconstruction_figures(dictionary, acts), acts.n_tokens)
    if isinstance(dictionary, Dictionary) and dictionary.kind == "sae" and problem is not None:
        from ..evidence.sae import spliced_metric  # the SAE's residual-stream splice

        clean = torch.cat([problem.score(b).float().cpu() for b in problem.batches])
        out.metric_clean = float(clean.mean())
        out.metric_spliced = float(spliced_metric(problem, dictionary).mean())
    splices = isinstance(dictionary, Transcoders) or dictionary.kind == "sae"
    if model is not None and texts and splices:
        out.loss_clean = next_token_loss(model, texts)
        out.loss_spliced = next_token_loss(model, texts, dictionary)
    if isinstance(dictionary, Transcoders):
        if problem is not None:
            out.metric_clean, out.metric_spliced = task_metric(problem, dictionary)
    return out
