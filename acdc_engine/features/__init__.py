"""Feature circuits: circuits among dictionary features instead of heads and MLPs.

Component circuits and feature circuits are two granularities of one engine (same models,
tasks, metrics, records and viewer). Modules:

* :mod:`.dictionary`: SAEs, per-layer and cross-layer transcoders (one interface for the
  replacement model).
"""

from .dictionary import (SAE, CrossLayerTranscoder, Dictionary, Transcoder, Transcoders,
                         TranscoderSet)

__all__ = ["Dictionary", "SAE", "Transcoder", "Transcoders", "TranscoderSet",
           "CrossLayerTranscoder"]
