"""Feature circuits: circuits among dictionary features instead of heads and MLPs.

Component circuits and feature circuits are two granularities of one engine (same models,
tasks, metrics, records and viewer). Modules:

* :mod:`.dictionary`: SAEs, per-layer and cross-layer transcoders (one interface for the
  replacement model), :func:`check_dictionary` (does it fit a model).
* :mod:`.formats`: the engine's dictionary files and SAELens folders, by path or cached hub id.
* :mod:`.train` (training on a corpus), :mod:`.stats` (FVU, L0, dead features, spliced loss),
  :mod:`.shipped` (the transcoders shipped with ``gpt2-ioi-bpe``).
* :mod:`.splice`: the replacement model: :func:`spliced_run` (transcoders in place of the MLPs,
  error terms, edits, frozen attention patterns and norm scales).
* :mod:`.attribution_graph`: :func:`trace`, one prompt's attribution graph (circuit-tracer's
  method; pruning and scores in :mod:`.prune`, its graph JSON in :mod:`.graph_json`).
* :mod:`.cards`: :func:`feature_card`, what a feature is (top contexts, logit effects,
  density; cached per dictionary and corpus).
* :mod:`.interventions`: ablate or clamp features (:class:`FeatureEdit`, :func:`intervene`,
  :func:`intervene_task`), and :func:`predicted_vs_actual` against a graph
  (:mod:`.graph_check`).
* :mod:`.task_circuit`, :mod:`.task_eval`, :mod:`.feature_circuit`: task-level sparse feature
  circuits (Marks et al.): IG node scores, edges, faithfulness and completeness curves, the
  :class:`FeatureCircuit` (networkx, circuit.json; drawn by :mod:`.feature_plot`).
"""

from .attribution_graph import AttributionGraph, trace
from .dictionary import (SAE, CrossLayerTranscoder, Dictionary, Transcoder, Transcoders,
                         TranscoderSet, check_dictionary)
from .formats import load_any, load_dictionary, load_saelens, save_dictionary, save_saelens
from .shipped import load_any_format, load_transcoders, shipped_path, shipped_transcoders
from .splice import SplicedRun, spliced_run
from .cards import FeatureCard, feature_card
from .feature_circuit import FeatureCircuit
from .interventions import FeatureEdit, intervene, intervene_task, predicted_vs_actual
from .task_circuit import score_nodes

__all__ = ["Dictionary", "SAE", "Transcoder", "Transcoders", "TranscoderSet",
           "CrossLayerTranscoder", "check_dictionary", "save_dictionary", "load_dictionary",
           "save_saelens", "load_saelens", "load_any", "shipped_transcoders", "shipped_path",
           "load_transcoders", "load_any_format",
           "spliced_run", "SplicedRun", "trace", "AttributionGraph",
           "FeatureCard", "feature_card", "FeatureEdit", "intervene", "intervene_task",
           "predicted_vs_actual", "FeatureCircuit", "score_nodes"]
