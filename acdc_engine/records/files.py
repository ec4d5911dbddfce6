"""Files of a run directory: edge scores (``edge_scores.tsv``) and run ids.

Layout (the CLI's default output directory)::

    results/
      mlflow.db                       the embedded MLflow store (when no tracking URI is set)
      mlartifacts/<experiment>/...    its artifacts
      <experiment>/<run-id>/          one run: run.json, circuit.json, edge_scores.tsv,
                                      curve.tsv, curve.png, circuit.svg/.png/.html

``<experiment>`` is the task name unless given; ``<run-id>`` is the MLflow run id when tracking,
else a timestamp id (``20250101-120000-eap-ig-1a2b``). ``run.json`` is written by
:class:`~acdc_engine.records.recorder.Recorder`.
"""

from __future__ import annotations

import secrets
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import AcdcError
from .store import safe_name

if TYPE_CHECKING:  # torch and the graph are imported where scores are read or written
    import torch

    from ..graph import Graph

__all__ = ["new_run_id", "now", "write_scores", "read_scores"]


def new_run_id(label: str = "") -> str:
    """A timestamp run id for untracked runs: ``YYYYmmdd-HHMMSS-<label>-<4 hex>``."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return "-".join(filter(None, [stamp, safe_name(label) if label else "", secrets.token_hex(2)]))


def now() -> str:
    """The current UTC time, ISO 8601 to the second (run records' timestamps)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")



def write_scores(path: str | Path, graph: Graph, scores: torch.Tensor, keep: bool = True
                 ) -> Path:
    """``edge<TAB>score`` per edge, in graph order (``edge_scores.tsv``); returns the file.

    Scores are the expensive part of a run: if ``path`` cannot be written (its directory was
    removed, the disk is full), the partial file is removed and (``keep``) they are written to
    a new temporary directory instead and the user is told where on stderr; with
    ``keep=False`` the error is raised (a :class:`~acdc_engine.records.Recorder` moves the
    whole run)."""
    path = Path(path)
    lines = ["edge\tscore\n", *(f"{e.name}\t{s:.6g}\n"
                                 for e, s in zip(graph.edges, scores.tolist()))]
    try:
        path.write_text("".join(lines))
    except OSError as e:
        try:
            path.unlink(missing_ok=True)  # a partial file is not the scores
        except OSError:
            pass
        if not keep:
            raise
        kept = Path(tempfile.mkdtemp(prefix="acdc-kept-")) / path.name
        kept.write_text("".join(lines))
        print(f"warning: cannot write {path} ({e.strerror or e}); the scores are kept in "
              f"{kept}", file=sys.stderr)
        return kept
    return path


def read_scores(path: str | Path, graph: Graph) -> torch.Tensor:
    """Scores from an ``edge_scores.tsv`` in ``graph``'s edge order; every edge must appear."""
    import torch

    path = Path(path)
    values: dict[str, float] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise AcdcError(f"cannot read edge scores {path}: {e}") from None
    for i, line in enumerate(lines):
        if not line.strip() or (i == 0 and line.startswith("edge")):
            continue
        name, _, value = line.partition("\t")
        try:
            values[name.strip()] = float(value)
        except ValueError:
            raise AcdcError(
                f"{path}, line {i + 1}: expected 'edge<TAB>score', got {line!r}"
            ) from None
    unknown = set(values) - set(graph.edge_index)
    if unknown:
        raise AcdcError(f"{path} has {len(unknown)} edge(s) this model's graph does not have "
                        f"(e.g. {sorted(unknown)[:3]}); is it a run of another model?")
    missing = [e.name for e in graph.edges if e.name not in values]
    if missing:
        raise AcdcError(f"{path} lacks scores for {len(missing)} of {graph.n_edges} edges "
                        f"(e.g. {missing[:3]})")
    return torch.tensor([values[e.name] for e in graph.edges], dtype=torch.float32)


