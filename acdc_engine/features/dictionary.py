"""Sparse dictionaries: SAEs, per-layer transcoders and cross-layer transcoders.

A dictionary maps an activation ``x`` to sparse feature activations and back::

    pre  = (x - b_dec) @ W_enc + b_enc     (an SAE: its input centred by the decoder bias)
    pre  =  x          @ W_enc + b_enc     (a transcoder)
    acts = activate(pre)                    relu | topk (the k largest, relu'd) | jumprelu
    out  = acts @ W_dec + b_dec

* :class:`SAE` reads and reconstructs the residual stream after layer ``layer`` (``-1``: the
  embeddings).
* :class:`Transcoder` reads layer ``layer``'s MLP input (what the MLP module receives, after
  its norm) and predicts that MLP's output.
* :class:`CrossLayerTranscoder`: the features of layer ``l`` read layer ``l``'s MLP input and
  write to the MLP outputs of layers ``l .. n_layers - 1`` (``W_dec[l]`` is ``[n, n_layers - l,
  d]``).

Both kinds of transcoder answer one interface, :class:`Transcoders` (a :class:`TranscoderSet`
of per-layer transcoders is one): ``encode(layer, x)``, ``decoder(layer_in, layer_out)`` and
``decode(layer_out, acts)``, which is all a replacement model needs: the MLP output of layer
``j`` is replaced by ``sum_{i <= j} acts_i @ decoder(i, j) + b_dec(j)`` plus an error term.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import torch

from ..errors import AcdcError

__all__ = ["ACTIVATIONS", "Dictionary", "SAE", "Transcoder", "Transcoders", "TranscoderSet",
           "CrossLayerTranscoder", "activate", "from_config", "check_dictionary",
           "save_dictionary", "FORMAT"]

ACTIVATIONS = ("relu", "topk", "jumprelu")
"""The feature nonlinearities a dictionary may use."""


def activate(pre: torch.Tensor, activation: str, k: int | None = None,
             threshold: torch.Tensor | None = None) -> torch.Tensor:
    """Feature activations from pre-activations ``pre`` [..., n]: ``relu``; ``topk`` (the ``k``
    largest per row, relu'd, the rest zero); ``jumprelu`` (``pre`` where ``pre > threshold``,
    else zero)."""
    if activation == "relu":
        return torch.relu(pre)
    if activation == "topk":
        top = pre.topk(k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, top.indices, torch.relu(top.values))
    if activation == "jumprelu":
        return pre * (pre > threshold).to(pre.dtype)
    raise AcdcError(f"unknown activation {activation!r}; use one of {', '.join(ACTIVATIONS)}")


def _check_activation(activation: str, k: int | None, n_features: int) -> None:
    if activation not in ACTIVATIONS:
        raise AcdcError(f"unknown activation {activation!r}; use one of {', '.join(ACTIVATIONS)}")
    if activation == "topk" and not (isinstance(k, int) and 0 < k <= n_features):
        raise AcdcError(f"a topk dictionary needs k in 1..{n_features} (its feature count), "
                        f"got k={k!r}")


class Dictionary(torch.nn.Module):
    """A sparse dictionary of ``n_features`` features from ``d_in`` inputs to ``d_out`` outputs
    (see the module docstring). ``layer`` is where it reads; ``model`` (optional) names the
    model it was trained on, so a dictionary for another model can be refused."""

    kind = "dictionary"
    center_input = False
    """Subtract ``b_dec`` from the input before encoding (the SAE convention)."""

    def __init__(self, d_in: int, n_features: int, d_out: int | None = None, layer: int = 0,
                 activation: str = "relu", k: int | None = None, model: str | None = None):
        super().__init__()
        _check_activation(activation, k, n_features)
        d_out = d_in if d_out is None else d_out
        self.layer, self.activation, self.k, self.model = layer, activation, k, model
        self.W_enc = torch.nn.Parameter(torch.randn(d_in, n_features) / d_in**0.5)
        self.b_enc = torch.nn.Parameter(torch.zeros(n_features))
        self.W_dec = torch.nn.Parameter(torch.randn(n_features, d_out) / n_features**0.5)
        self.b_dec = torch.nn.Parameter(torch.zeros(d_out))
        self.threshold = torch.nn.Parameter(torch.zeros(n_features)) \
            if activation == "jumprelu" else None

    @property
    def d_in(self) -> int:
        """The input width."""
        return self.W_enc.shape[0]

    @property
    def d_out(self) -> int:
        """The output width."""
        return self.W_dec.shape[1]

    @property
    def n_features(self) -> int:
        """The number of features."""
        return self.W_enc.shape[1]

    def pre_acts(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-activations [..., n_features] of inputs ``x`` [..., d_in]."""
        if self.center_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Feature activations [..., n_features] of inputs ``x`` [..., d_in]."""
        return activate(self.pre_acts(x), self.activation, self.k, self.threshold)

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        """The output [..., d_out] of feature activations ``acts`` [..., n_features]."""
        return acts @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``decode(encode(x))``."""
        return self.decode(self.encode(x))

    def config(self) -> dict:
        """What rebuilds this dictionary with :meth:`from_config` (weights aside)."""
        return {"kind": self.kind, "d_in": self.d_in, "n_features": self.n_features,
                "d_out": self.d_out, "layer": self.layer, "activation": self.activation,
                "k": self.k, "model": self.model}

    @classmethod
    def from_config(cls, config: dict) -> Dictionary:
        """A dictionary (random weights) of the shape ``config`` describes."""
        kinds = {c.kind: c for c in (SAE, Transcoder)}
        kind = config.get("kind")
        if kind not in kinds:
            raise AcdcError(f"dictionary kind {kind!r} is not one of {', '.join(kinds)}")
        keys = ("d_in", "n_features", "d_out", "layer", "activation", "k", "model")
        return kinds[kind](**{k: config[k] for k in keys if k in config})

    def save(self, path, figures: dict | None = None):
        """Write this dictionary to ``path`` in the engine's format
        (:func:`save_dictionary`)."""
        return save_dictionary(self, path, figures)


class SAE(Dictionary):
    """A sparse autoencoder of the residual stream after layer ``layer`` (-1: embeddings)."""

    kind = "sae"
    center_input = True


class Transcoder(Dictionary):
    """A per-layer transcoder: reads layer ``layer``'s MLP input (after its norm), predicts that
    MLP's output."""

    kind = "transcoder"


class Transcoders(torch.nn.Module):
    """What a replacement model needs from a set of transcoders covering ``n_layers`` layers.

    ``encode(layer, x)`` -> feature activations [..., n] of layer ``layer``'s features from that
    layer's MLP input ``x``; ``decoder(layer_in, layer_out)`` -> [n, d_model] or None (the
    features of ``layer_in`` do not write to ``layer_out``'s MLP output); ``b_dec(layer_out)``
    -> [d_model]; ``decode(layer_out, acts)`` -> the predicted MLP output of ``layer_out`` from
    every layer's activations ``acts[i]`` (None for a layer not computed)."""

    n_layers: int

    def save(self, path, figures: dict | None = None):
        """Write this dictionary to ``path`` in the engine's format
        (:func:`save_dictionary`)."""
        return save_dictionary(self, path, figures)

    def encode(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Feature activations of layer ``layer`` from its MLP input ``x`` [..., d_model]."""
        raise NotImplementedError

    def pre_acts(self, layer: int, x: torch.Tensor) -> torch.Tensor:
        """Feature pre-activations of layer ``layer`` from its MLP input ``x``."""
        raise NotImplementedError

    def decoder(self, layer_in: int, layer_out: int) -> torch.Tensor | None:
        """The decoder vectors [n, d_model] of ``layer_in``'s features into ``layer_out``."""
        raise NotImplementedError

    def b_dec(self, layer_out: int) -> torch.Tensor:
        """The decoder bias [d_model] of ``layer_out``'s MLP output."""
        raise NotImplementedError

    def decode(self, layer_out: int, acts: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """``sum_{i <= layer_out} acts[i] @ decoder(i, layer_out) + b_dec(layer_out)``."""
        out = self.b_dec(layer_out)
        for i in range(layer_out + 1):
            w = self.decoder(i, layer_out)
            if w is not None and i < len(acts) and acts[i] is not None:
                out = out + acts[i] @ w
        return out


class TranscoderSet(Transcoders):
    """Per-layer transcoders, one per layer ``0 .. n_layers - 1`` (``transcoders[l].layer ==
    l``): each layer's features write to its own MLP output only."""

    def __init__(self, transcoders: Sequence[Transcoder]):
        super().__init__()
        layers = [t.layer for t in transcoders]
        if layers != list(range(len(transcoders))):
            raise AcdcError(f"a transcoder set needs one transcoder per layer 0..{len(layers) - 1}"
                            f" in order; got layers {layers}")
        self.layers = torch.nn.ModuleList(transcoders)
        self.n_layers = len(transcoders)

    @property
    def model(self) -> str | None:
        """The model the transcoders were trained on (the first layer's ``model``)."""
        return self.layers[0].model if self.n_layers else None

    @property
    def d_model(self) -> int:
        """The residual stream's width (layer 0's input width)."""
        return self.layers[0].d_in

    @property
    def n_features(self) -> int:
        """Features per layer (layer 0's; a set may mix widths)."""
        return self.layers[0].n_features

    @property
    def activation(self) -> str:
        """Layer 0's activation."""
        return self.layers[0].activation

    def config(self) -> dict:
        """What rebuilds this set's shape (weights aside): each layer's config."""
        return {"kind": "transcoder_set", "n_layers": self.n_layers,
                "layers": [t.config() for t in self.layers]}

    def encode(self, layer, x):
        return self.layers[layer].encode(x)

    def pre_acts(self, layer, x):
        return self.layers[layer].pre_acts(x)

    def decoder(self, layer_in, layer_out):
        return self.layers[layer_in].W_dec if layer_in == layer_out else None

    def b_dec(self, layer_out):
        return self.layers[layer_out].b_dec


class CrossLayerTranscoder(Transcoders):
    """A cross-layer transcoder over ``n_layers`` layers of width ``d_model``, ``n_features``
    features per layer: ``W_enc`` [L, d, n], ``b_enc`` [L, n], ``W_dec[l]`` [n, L - l, d] (to the
    MLP outputs of layers ``l ..``), ``b_dec`` [L, d]."""

    kind = "clt"

    def __init__(self, n_layers: int, d_model: int, n_features: int, activation: str = "relu",
                 k: int | None = None, model: str | None = None):
        super().__init__()
        _check_activation(activation, k, n_features)
        self.n_layers, self.activation, self.k, self.model = n_layers, activation, k, model
        self.W_enc = torch.nn.Parameter(torch.randn(n_layers, d_model, n_features) / d_model**0.5)
        self.b_enc = torch.nn.Parameter(torch.zeros(n_layers, n_features))
        self.W_dec = torch.nn.ParameterList(
            torch.nn.Parameter(torch.randn(n_features, n_layers - i, d_model)
                               / (n_features * (n_layers - i))**0.5)
            for i in range(n_layers))
        self.b_dec_all = torch.nn.Parameter(torch.zeros(n_layers, d_model))
        self.threshold = torch.nn.Parameter(torch.zeros(n_layers, n_features)) \
            if activation == "jumprelu" else None

    @property
    def d_model(self) -> int:
        """The residual stream's width."""
        return self.W_enc.shape[1]

    @property
    def n_features(self) -> int:
        """Features per layer."""
        return self.W_enc.shape[2]

    def pre_acts(self, layer, x):
        return x @ self.W_enc[layer] + self.b_enc[layer]

    def encode(self, layer, x):
        th = None if self.threshold is None else self.threshold[layer]
        return activate(self.pre_acts(layer, x), self.activation, self.k, th)

    def decoder(self, layer_in, layer_out):
        return self.W_dec[layer_in][:, layer_out - layer_in] if layer_out >= layer_in else None

    def b_dec(self, layer_out):
        return self.b_dec_all[layer_out]

    def config(self) -> dict:
        """What rebuilds this transcoder's shape (weights aside)."""
        return {"kind": self.kind, "n_layers": self.n_layers, "d_model": self.d_model,
                "n_features": self.n_features, "activation": self.activation, "k": self.k,
                "model": self.model}


# ----- any dictionary ----------------------------------------------------------------------
AnyDictionary = Dictionary | Transcoders


def from_config(config: dict) -> AnyDictionary:
    """A dictionary, transcoder set or cross-layer transcoder (random weights) of the shape
    ``config`` describes (what ``.config()`` returned)."""
    kind = config.get("kind")
    if kind == "transcoder_set":
        return TranscoderSet([Dictionary.from_config(c) for c in config["layers"]])
    if kind == "clt":
        keys = ("n_layers", "d_model", "n_features", "activation", "k", "model")
        return CrossLayerTranscoder(**{k: config[k] for k in keys if k in config})
    return Dictionary.from_config(config)


FORMAT = "acdc-dictionary/1"
"""The ``format`` metadata entry of the engine's dictionary files (read by
:func:`acdc_engine.features.formats.load_dictionary`)."""


def save_dictionary(dictionary: AnyDictionary, path: str | Path,
                    figures: dict | None = None) -> Path:
    """Write ``dictionary`` to ``path`` (a ``.safetensors`` file) in the engine's format;
    ``figures`` (e.g. FVU, L0) travel in its metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "config": json.dumps(dictionary.config())}
    if isinstance(dictionary, Dictionary):
        meta["layer"] = str(dictionary.layer)  # what older readers (evidence.sae) look for
    if figures:
        meta["figures"] = json.dumps(figures)
    tensors = {k: v.detach().contiguous().cpu() for k, v in dictionary.state_dict().items()}
    save_file(tensors, str(path), metadata=meta)
    return path


def _same_model(a: str, b: str) -> bool:
    """Whether two model ids name the same model (a shipped name and its folder agree)."""
    return a == b or Path(a.rstrip("/")).name == Path(b.rstrip("/")).name


def check_dictionary(dictionary: AnyDictionary, target) -> None:
    """Refuse (one line naming the dictionary's file and the mismatch) a dictionary that does
    not fit ``target``'s model (a ``Problem``, ``LoadedModel`` or ``ModelAdapter``): trained on
    another model (its ``model`` against the model's id), a layer the model lacks, another
    number of layers, or another width."""
    if hasattr(target, "d_model") and hasattr(target, "n_layers"):  # a ModelAdapter
        adapter, model_id = target, None
    else:
        model = target if hasattr(target, "adapter") else target.model  # a Problem's model
        adapter, model_id = model.adapter, model.id
    name = f"dictionary '{getattr(dictionary, 'source', None) or type(dictionary).__name__}'"
    trained_on = getattr(dictionary, "model", None)
    if trained_on and model_id and not _same_model(str(trained_on), str(model_id)):
        raise AcdcError(f"{name} was trained on model {trained_on!r}, not {model_id!r}")
    n, d = adapter.n_layers, adapter.d_model
    if isinstance(dictionary, Transcoders):
        if dictionary.n_layers != n:
            raise AcdcError(f"{name} covers {dictionary.n_layers} layers, but the model has {n}")
        d_in = d_out = dictionary.d_model
    else:
        low = -1 if isinstance(dictionary, SAE) else 0
        if not low <= dictionary.layer < n:
            raise AcdcError(f"{name} is for layer {dictionary.layer}, but the model has layers "
                            f"{low}..{n - 1}")
        d_in, d_out = dictionary.d_in, dictionary.d_out
    if d_in != d or d_out != d:
        raise AcdcError(f"{name} maps {d_in} to {d_out} dimensions, but the model's d_model is "
                        f"{d}")
    if getattr(adapter, "attn_only", False) and not isinstance(dictionary, SAE):
        raise AcdcError(f"{name} is a transcoder, but the model has no MLPs")
