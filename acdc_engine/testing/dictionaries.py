"""Random dictionaries for tests: transcoders that fit a model, and weight comparisons.

    tc = random_transcoders(model)                       # per-layer top-k, small random biases
    tc = random_transcoders(model, cross=True)           # one cross-layer transcoder
    tc = random_transcoders(model, activation="relu", b_enc=-0.2)   # sparse by a negative bias
    randomize(dictionary, seed=1, low=-0.3)              # every parameter uniform in [low, low+1)
    assert same_weights(a, b)                            # bit-identical state dicts

A plugin author uses them to check a new family against the feature-circuit identities
(``acdc_engine.features``): spliced runs with error terms reproduce the model, every graph
node's input is the sum of its edges plus its bias term.
"""

from __future__ import annotations

import torch

from ..features.dictionary import CrossLayerTranscoder, Transcoder, TranscoderSet

__all__ = ["random_transcoders", "randomize", "same_weights"]


def random_transcoders(model, n: int = 24, k: int | None = 3, seed: int = 0,
                       cross: bool = False, activation: str = "topk",
                       b_enc: float | None = None):
    """Random transcoders of ``n`` features per layer for ``model`` (a loaded model or an
    adapter): per layer (a :class:`TranscoderSet`) or ``cross``-layer. With ``b_enc`` None the
    biases are drawn from N(0, 0.1); else every encoder bias is ``b_enc`` (negative: sparse)
    and the other biases stay zero."""
    torch.manual_seed(seed)
    a = getattr(model, "adapter", model)
    k = k if activation == "topk" else None
    if cross:
        tc = CrossLayerTranscoder(a.n_layers, a.d_model, n, activation=activation, k=k)
    else:
        tc = TranscoderSet([Transcoder(a.d_model, n, layer=i, activation=activation, k=k)
                            for i in range(a.n_layers)])
    with torch.no_grad():
        for name, p in tc.named_parameters():
            if b_enc is not None:
                if "b_enc" in name:
                    p.fill_(b_enc)
            elif "b_" in name:
                p.normal_(0.0, 0.1)
    return tc


def randomize(module: torch.nn.Module, seed: int = 0, low: float = -0.3) -> torch.nn.Module:
    """Give every parameter of ``module`` (thresholds included) values uniform in ``[low, low +
    1)``, seeded; ``module`` itself, changed."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand(p.shape, generator=g) + low)
    return module


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    """Do ``a`` and ``b`` hold the same parameters, bit for bit (names, dtypes, values)?"""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(
        sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]) for key in sa)
