"""Model adapters: how each architecture is run one component at a time.

    ModelAdapter   the protocol a family implements (:mod:`.adapter`)
    ModelFamily    a named architecture: which Hugging Face models an adapter runs
    LoadedModel    a loaded model: nnsight wrapper, adapter, tokenizer, identity
    ShippedModel   a model a plugin ships: a short name for a directory (+ ground truth)
    shared_norm    a norm run once for the readers of a layer in gradient runs (:mod:`.norms`)

Loading (transformers + nnsight, the load-time self-check) is one layer up, in
:mod:`acdc_engine.loading`, because the self-check runs the patched forward.
"""

from .adapter import ModelAdapter, ModelFamily
from .loaded import LoadedModel, resolve_device, resolve_dtype
from .norms import shared_norm
from .shipped import ShippedModel

__all__ = ["ModelAdapter", "ModelFamily", "LoadedModel", "ShippedModel", "resolve_device",
           "resolve_dtype", "shared_norm"]
