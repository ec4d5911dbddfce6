"""Scoring methods: a score per edge from a :class:`~acdc_engine.problem.Problem`.

    attribution   EAP and EAP-IG: every edge from a few forward+backward passes
    exact         exact single-edge patching (the slow reference)
    acdc          iterative pruning with exact patching (ACDC), fast and exact, and the
                  attribution-guided hybrid
    base          :class:`Method` (a named method with typed settings and a search space)
"""

from .acdc import AcdcConfig, acdc
from .attribution import ATTRIBUTION_METHODS, IG_STEPS, attribute
from .base import Method, MethodOutput, NoSettings, setting
from .exact import exact_scores

__all__ = ["acdc", "AcdcConfig", "attribute", "ATTRIBUTION_METHODS", "IG_STEPS", "exact_scores",
           "Method", "MethodOutput", "NoSettings", "setting"]
