"""A model's shape from its config alone: no weights are read or allocated.

:func:`model_shape` reads ``config.json`` (a shipped model's, a local directory's, or a hub
model's from the Hugging Face cache), builds the model on the meta device (parameters without
storage) and lets the model's own family adapter say its graph, so the writers, readers and
edges are the ones a run would have, and the parameter count is exact (tied embeddings once).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import AcdcError
from ..graph import Graph

__all__ = ["ModelShape", "model_shape"]


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs of a model: its sizes and its edge graph."""

    model: str
    model_type: str
    family: str
    params: int
    d_model: int
    vocab: int
    graph: Graph

    @property
    def n_writers(self) -> int:
        """Nodes that write to the residual stream (the writer buffer's first dimension)."""
        return self.graph.n_writers

    @property
    def n_readers(self) -> int:
        """Reader slots (heads' q/k/v inputs, MLPs, the logits)."""
        return self.graph.n_readers

    @property
    def n_edges(self) -> int:
        """Edges of the graph (closed form: no edge list is built)."""
        return self.graph.n_edges_closed()


def _source(model: str, revision: str | None) -> tuple[str, dict]:
    """Where ``model``'s config is (a directory or a hub id) and the ``from_pretrained``
    options to read it without the network when it is cached."""
    from ..plugins import registry

    shipped = registry().shipped.get(model)
    if shipped is not None:
        return str(shipped.path), {}
    local = Path(model).expanduser()
    if local.exists():
        if not (local / "config.json").is_file():
            raise AcdcError(f"model path {model!r} has no config.json")
        return str(local), {}
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise AcdcError(f"model path {model!r} does not exist")
    return model, {"revision": revision}


def _config(model: str, revision: str | None):
    from transformers import AutoConfig

    source, kw = _source(model, revision)
    try:
        return AutoConfig.from_pretrained(source, local_files_only=True, **kw)
    except OSError:
        pass
    except (ValueError, KeyError) as e:
        raise AcdcError(f"model {model!r}: transformers cannot read its config "
                        f"({str(e).splitlines()[0][:160]})") from None
    from ..loading import hub_reachable

    why = hub_reachable()
    if why is not None:
        raise AcdcError(f"model {model!r} is not a shipped model, a local directory or a hub "
                        f"model in the Hugging Face cache, and the hub is unreachable ({why})")
    try:
        return AutoConfig.from_pretrained(source, **kw)
    except OSError as e:
        raise AcdcError(f"model {model!r}: no config on the hub "
                        f"({str(e).splitlines()[0][:160]})") from None


def _build(cfg, layers: int | None = None):
    """``(hf model on the meta device, its family)`` for ``cfg``, with ``layers`` decoder
    layers instead of the config's when given (per-layer lists cut to match)."""
    import copy

    import torch
    from transformers import AutoModelForCausalLM
    from transformers.initialization import no_init_weights

    from ..plugins import registry

    if layers is not None:
        cfg = copy.deepcopy(cfg)
        text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        full = text.num_hidden_layers
        for key, value in vars(text).items():
            if isinstance(value, list) and len(value) == full:
                setattr(text, key, value[:layers])
        text.num_hidden_layers = layers
    with torch.device("meta"), no_init_weights():
        hf = AutoModelForCausalLM.from_config(cfg)
    hf.tie_weights()  # tied embeddings are counted once
    family = next((f for f in registry().families.values() if f.matches(hf)), None)
    return hf, family


def _count(hf) -> int:
    return sum(p.numel() for p in hf.parameters())


def model_shape(model: str, revision: str | None = None) -> ModelShape:
    """The shape of ``model`` (shipped name, local directory or hub id) from its config: the
    model is built on the meta device and adapted by the first family that matches it. A deep
    model is built with one and two layers (seconds instead of minutes for 80 layers): its
    graph has the config's layers, its parameters are the one-layer count plus a layer's
    for every further layer (decoder layers are alike)."""
    from ..graph import Graph

    cfg = _config(model, revision)
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    L = getattr(text, "num_hidden_layers", None)
    try:
        if isinstance(L, int) and L > 2:
            try:
                (h1, _), (hf, family) = _build(cfg, 1), _build(cfg, 2)
                g = family.adapter(hf).graph
                if g.n_layers != 2:
                    raise ValueError("the adapter did not follow the layer count")
                graph = Graph(L, g.n_heads, parallel=g.parallel, attn_only=g.attn_only)
                params = _count(h1) + (L - 1) * (_count(hf) - _count(h1))
            except Exception:  # noqa: BLE001 - fall back to the whole model, built as it is
                L = None
        if not (isinstance(L, int) and L > 2):
            hf, family = _build(cfg)
            graph = family.adapter(hf).graph if family is not None else None
            params = _count(hf)
    except Exception as e:  # noqa: BLE001 - transformers' own words say what is wrong
        raise AcdcError(f"model {model!r}: its config ({cfg.model_type}) does not build a "
                        f"causal LM ({type(e).__name__}: {str(e).splitlines()[0][:120]})"
                        ) from None
    if family is None:
        raise AcdcError(f"model {model!r}: no model family runs model_type "
                        f"{cfg.model_type!r} (see `acdc plugins`)")
    emb = hf.get_input_embeddings().weight
    return ModelShape(model=model, model_type=cfg.model_type, family=family.name,
                      params=params, d_model=int(emb.shape[1]), vocab=int(emb.shape[0]),
                      graph=graph)
