"""The ``tracr`` model family: :class:`~acdc_tracr.modeling.TracrForCausalLM` run head by head.

Weights are already per head (``W_Q[h]: [d_model, d_head]``, ``W_O[h]: [d_head, d_model]``), so
a head's write is ``softmax(q_h k_h^T * scale) v_h W_O[h]``. Attention is **not causal** for
compiled tracr programs (every query sees every key, BOS included) and causal for trained
models that ask for it (``config.causal``). No layer norm anywhere; ``b_O`` is the layer's
constant. A model with ``d_mlp == 0`` is attention-only (``Graph(attn_only=True)``).
"""

from __future__ import annotations

import torch

from acdc_engine.models import ModelAdapter, ModelFamily


class TracrAdapter(ModelAdapter):
    def __init__(self, model):
        super().__init__(model)
        cfg = model.config
        self.n_layers, self.n_heads, self.d_model = cfg.n_layers, cfg.n_heads, cfg.d_model
        self.attn_only = cfg.d_mlp == 0
        self.causal, self.scale = bool(cfg.causal), float(cfg.attn_scale)

    def embed(self, input_ids):
        return self.model.embed(input_ids)  # [b, p, d]

    @staticmethod
    def _proj(x, w, b):
        """Residual ``x`` ([b,p,d] shared or [H,b,p,d] per head) -> [H, b, p, d_head]."""
        if x.dim() == 3:
            return torch.einsum("bpd,hde->hbpe", x, w) + b[:, None, None]
        return torch.einsum("hbpd,hde->hbpe", x, w) + b[:, None, None]

    def attn_heads(self, layer, q, k, v):
        attn = self.model.blocks[layer].attn
        qh = self._proj(q, attn.W_Q, attn.b_Q)
        kh = self._proj(k, attn.W_K, attn.b_K)
        vh = self._proj(v, attn.W_V, attn.b_V)
        scores = torch.einsum("hbpe,hbse->hbps", qh, kh) * self.scale  # [H, b, p_q, p_k]
        if self.causal:
            p = scores.shape[-1]
            future = torch.ones(p, p, dtype=torch.bool, device=scores.device).triu(1)
            scores = scores.masked_fill(future, float("-inf"))
        z = torch.einsum("hbps,hbse->hbpe", scores.softmax(-1), vh)
        return torch.einsum("hbpe,hed->hbpd", z, attn.W_O)  # [H, b, p, d]

    def attn_bias(self, layer):
        return self.model.blocks[layer].attn.b_O

    def mlp(self, layer, x):
        mlp = self.model.blocks[layer].mlp
        x = self.mlp_module(layer)(x)  # the identity: the transcoder hook point
        return self.mlp_out_proj(layer)(torch.relu(x @ mlp.W_in + mlp.b_in))

    def mlp_module(self, layer):
        """An identity module the MLP's input passes through (tracr has no norm): a
        transcoder reads the residual stream itself."""
        if not hasattr(self, "_in"):
            self._in = torch.nn.Identity()
        return self._in

    def mlp_out_proj(self, layer):
        """A view of the MLP's ``W_out``/``b_out`` as a module (tracr's MLP computes its output
        inline, so the adapter runs it through this module to give neuron tools a hook point)."""
        if not hasattr(self, "_out_proj"):
            self._out_proj = {}
        if layer not in self._out_proj:
            self._out_proj[layer] = _OutProj(self.model.blocks[layer].mlp)
        return self._out_proj[layer]

    def unembed(self, x):
        return self.model.unembed(x)


class _OutProj(torch.nn.Module):
    """``h @ W_out + b_out`` with the MLP's own parameters (not copied): h [..., d_mlp]."""

    def __init__(self, mlp):
        super().__init__()
        self._mlp = [mlp]  # a list: not registered as a submodule, the model owns it

    def forward(self, h):
        mlp = self._mlp[0]
        return h @ mlp.W_out + mlp.b_out


def _is_tracr(model) -> bool:
    return getattr(getattr(model, "config", None), "model_type", None) == "acdc_tracr"


FAMILY = ModelFamily(
    name="tracr",
    matches=_is_tracr,
    adapter=TracrAdapter,
    description="acdc_tracr.TracrForCausalLM: compiled tracr programs (non-causal, no layer "
                "norm, ReLU MLPs) and attention-only toy models",
)
