"""Metrics for outputs that are values rather than next-token distributions.

``l2`` is the metric the ACDC paper uses on the tracr programs: the squared Euclidean distance
between the patched and the clean model's output at the read position (the last by default),
summed over the output's entries (one for a numerical program such as frac_prevs, the class
readout for a categorical one). Lower is better; the full model scores 0.

Attribution at the clean run (plain EAP) sees a zero gradient for it, as for any distance to
the clean output (KL divergence too): use EAP-IG or exact patching with it.
"""

from __future__ import annotations

from acdc_engine.metrics import Metric


def l2(logits, batch):
    """[batch, n_out] logits at one read position -> [batch] squared distance to
    ``batch.clean_logits`` there (averaged over the read positions by ``Metric.score``)."""
    return (logits.float() - batch.clean_logits.float()).pow(2).sum(-1)


METRICS = [
    Metric("l2", l2, higher_is_better=False, needs=("clean_logits",),
           description="squared distance of the output to the clean model's output "
                       "(numerical outputs, e.g. tracr's frac_prevs)"),
]
