"""Evidence for a circuit: descriptive tools, causal tools and the uncertainty of every number.

    descriptive   attention patterns, logit lens, direct logit attribution, token attribution
    probes        per-layer linear probes with a shuffled-label control
    sae           sparse autoencoders on a layer, spliced into the patched forward; feature
                  effects exact (one run each) and by gradients (all at once)
    neurons       MLP-neuron-group ablation (zero, mean, corrupted) with intervals
    uncertainty   bootstrap intervals over examples, circuit stability (Jaccard), redundancy
    causal        activation patching over nodes x positions, node ablation, path patching
    diff          base vs fine-tuned: per-example scores, score changes, the diff diagram
    plots         matplotlib pictures of each (lazy import)
    gather        the evidence of a run context (stability, descriptive); reopening a run and
                  logging to it is acdc_engine.api.evidence (API level: it
                  loads models through acdc_engine.api.setup)
    report        the one-page HTML report of a run

Everything causal goes through :func:`acdc_engine.patching.run` (directly or through
:mod:`acdc_engine.interventions`): there is one patching mechanism.
"""

from .descriptive import (
    LogitLens,
    attention_patterns,
    direct_logit_attribution,
    logit_lens,
    residual_stream,
    token_attribution,
)
from .neurons import NeuronAblationResult, neuron_ablation, neuron_direct_effects
from .sae import feature_attribution, feature_effects

__all__ = ["attention_patterns", "logit_lens", "LogitLens", "direct_logit_attribution",
           "token_attribution", "residual_stream", "neuron_ablation", "neuron_direct_effects",
           "NeuronAblationResult", "feature_effects", "feature_attribution"]
