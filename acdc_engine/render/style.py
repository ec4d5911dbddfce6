"""What the pictures' colours mean: the node palette and the reading of an edge's score.

Every method scores an edge by the metric's change when the edge is removed::

    score(e) = m(circuit without e) - m(full model)

Whether a positive score is good news depends on the metric's direction. For a metric where
higher is better (logit difference) removing an important edge *lowers* it, so important edges
score below zero; for one where lower is better (KL divergence to the clean model) they score
above zero. :class:`ScoreMeaning` turns a score into what it says about the behaviour, so that
blue always means "important for the behaviour (removing it hurts)" and red "works against it
(removing it helps)", whatever the method and the metric. When the direction is unknown (an old
circuit file that does not record it), the colour is the plain sign and the legend says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import AcdcError
from ..graph import EdgeKind, NodeKind

__all__ = ["ScoreMeaning", "need_matplotlib", "FILL", "OUTLINE", "PORTS", "BLUE", "RED",
           "NEUTRAL", "EFFECT_COLOUR"]

BLUE = "#2166ac"
"""Edges important for the behaviour (or: score > 0 when the direction is unknown)."""
RED = "#c0392b"
"""Edges that work against the behaviour (or: score < 0)."""
NEUTRAL = "#555555"
"""Edges without a score."""
EFFECT_COLOUR = {"hurts": BLUE, "helps": RED, "pos": BLUE, "neg": RED}
"""Colour per effect class (see :meth:`ScoreMeaning.effect`)."""
FILL = {NodeKind.INPUT: "#e8f1e4", NodeKind.ATTN: "#fdf0dc", NodeKind.MLP: "#ece6f5",
        NodeKind.LOGITS: "#e8eef6"}
"""Box fill colour per node kind."""
OUTLINE = {NodeKind.INPUT: "#6b9a5b", NodeKind.ATTN: "#c98a2b", NodeKind.MLP: "#8069ad",
           NodeKind.LOGITS: "#5a7ca8"}
"""Box outline colour per node kind."""
PORTS = {EdgeKind.Q: -0.3, EdgeKind.K: 0.0, EdgeKind.V: 0.3}
"""Where q, k and v edges enter a head's box: offsets along its bottom edge."""


def need_matplotlib():
    """The ``matplotlib`` module, or an error that names the extra to install."""
    try:
        import matplotlib
    except ImportError:
        raise AcdcError("drawing pictures needs matplotlib: pip install 'acdc-engine[render]'"
                        ) from None
    return matplotlib


@dataclass(frozen=True)
class ScoreMeaning:
    """How to read the sign of a score: ``higher_is_better`` is the metric's direction (None:
    unknown), ``metric`` its name for the legend.

    :meth:`effect` sorts a score into one of two classes, which colour, legend, hover text and
    the page's table share: ``"hurts"`` (removing the edge hurts the behaviour: the edge is
    important) and ``"helps"`` (removing it helps: the edge works against the behaviour); with
    the direction unknown, ``"pos"`` and ``"neg"``.
    """

    higher_is_better: bool | None = None
    metric: str | None = None

    @classmethod
    def of(cls, attrs: dict, higher_is_better: bool | None = None) -> ScoreMeaning:
        """The meaning for a circuit with attributes ``attrs``: the direction given, else the
        recorded ``metric_higher_is_better``; the metric's name from ``metric``."""
        if higher_is_better is None:
            higher_is_better = _flag(attrs.get("metric_higher_is_better"))
        metric = attrs.get("metric")
        return cls(higher_is_better, str(metric) if metric else None)

    @property
    def known(self) -> bool:
        return self.higher_is_better is not None

    def effect(self, score: float | None) -> str | None:
        """``"hurts"``/``"helps"`` (direction known) or ``"pos"``/``"neg"``; None: no score."""
        if score is None or math.isnan(score):
            return None
        if not self.known:
            return "pos" if score >= 0 else "neg"
        # removing the edge moves the metric by `score`; that hurts when it moves it the wrong way
        hurts = score < 0 if self.higher_is_better else score > 0
        return "hurts" if hurts else "helps"

    def colour(self, score: float | None) -> str:
        return EFFECT_COLOUR.get(self.effect(score), NEUTRAL)

    @property
    def labels(self) -> dict[str, str]:
        """Legend label per effect class, in legend order (blue first)."""
        if not self.known:
            return {"pos": "score > 0", "neg": "score < 0"}
        m = self.metric or "the metric"
        down, up = ("falls", "rises") if self.higher_is_better else ("rises", "falls")
        return {"hurts": f"important: removing it hurts ({m} {down})",
                "helps": f"works against it: removing it helps ({m} {up})"}

    @property
    def note(self) -> str:
        """One line that says what a score is and how the colour reads it."""
        m = self.metric or "metric"
        text = f"score = {m}(without the edge) \u2212 {m}(full model)"
        if not self.known:
            return text + "; the metric's direction is unknown, so colour is the score's sign"
        return text + f"; {'higher' if self.higher_is_better else 'lower'} {m} is better"


def _flag(v) -> bool | None:
    """A recorded boolean (JSON bool, or a string from a flat parameter store); None if absent."""
    if v is None or isinstance(v, bool):
        return v
    text = str(v).strip().lower()
    return True if text in ("true", "1") else False if text in ("false", "0") else None
