"""Model adapters: how each architecture is run one component at a time.

    ModelAdapter   the protocol a family implements (:mod:`.adapter`)
    ModelFamily    a named architecture: which Hugging Face models an adapter runs
    LoadedModel    a loaded model: nnsight wrapper, adapter, tokenizer, identity
    ShippedModel   a model a plugin ships: a short name for a directory (+ ground truth)

Loading (transformers + nnsight, the load-time self-check) is one layer up, in
:mod:`acdc_engine.loading`, because the self-check runs the patched forward. The kernels a
family's attention may call to be fast in the patched forward (the shared norm, the fused norm
and q/k/v projections, the head writes formed in the writer buffer) are the forward's own:
:mod:`acdc_engine.patching.norms` and :mod:`acdc_engine.patching.head_writes`.
"""

from .adapter import ModelAdapter, ModelFamily
from .loaded import LoadedModel, resolve_device, resolve_dtype
from .shipped import ShippedModel

__all__ = ["ModelAdapter", "ModelFamily", "LoadedModel", "ShippedModel", "resolve_device",
           "resolve_dtype"]
