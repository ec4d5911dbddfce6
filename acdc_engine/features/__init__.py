"""Feature circuits: circuits among dictionary features instead of heads and MLPs.

Component circuits and feature circuits are two granularities of one engine (same models,
tasks, metrics, records and viewer). Modules:

* :mod:`.dictionary`: SAEs, per-layer and cross-layer transcoders (one interface for the
  replacement model), :func:`check_dictionary` (does it fit a model).
* :mod:`.formats`: the engine's dictionary files and SAELens folders, by path or cached hub id.
* :mod:`.splice`: the replacement model: :func:`spliced_run` (transcoders in place of the MLPs,
  error terms, edits, frozen attention patterns and norm scales).
"""

from .dictionary import (SAE, CrossLayerTranscoder, Dictionary, Transcoder, Transcoders,
                         TranscoderSet, check_dictionary)
from .formats import load_any, load_dictionary, load_saelens, save_dictionary, save_saelens
from .splice import SplicedRun, spliced_run

__all__ = ["Dictionary", "SAE", "Transcoder", "Transcoders", "TranscoderSet",
           "CrossLayerTranscoder", "check_dictionary", "save_dictionary", "load_dictionary",
           "save_saelens", "load_saelens", "load_any", "spliced_run", "SplicedRun"]
