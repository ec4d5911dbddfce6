"""Scoring methods: a score per edge from a :class:`~acdc_engine.problem.Problem`.

    attribution   EAP and EAP-IG: every edge from a few forward+backward passes
    variants      EAP-IG over activations, clean-corrupted, AtP* GradDrop; qk_fix: AtP*'s
                  QK fix; routes: information flow routes (docs/methods-attribution.md)
    mask_opt      mask optimization: Edge Pruning (hard-concrete masks, a Lagrangian on the
                  sparsity) and UGS (docs/methods.md)
    exact         exact single-edge patching (the slow reference)
    acdc          iterative pruning with exact patching (ACDC), fast and exact, and the
                  attribution-guided hybrid
    base          :class:`Method` (a named method with typed settings and a search space)
"""

from .acdc import AcdcConfig, acdc
from .attribution import ATTRIBUTION_METHODS, IG_STEPS, attribute
from .base import Method, MethodOutput, NoSettings, setting
from .exact import exact_scores
from .qk_fix import atp_qk
from .routes import information_flow_routes
from .variants import atp_graddrop, clean_corrupted, eap_ig_activations

__all__ = ["acdc", "AcdcConfig", "attribute", "ATTRIBUTION_METHODS", "IG_STEPS", "exact_scores",
           "Method", "MethodOutput", "NoSettings", "setting", "eap_ig_activations",
           "clean_corrupted", "atp_graddrop", "atp_qk", "information_flow_routes"]
