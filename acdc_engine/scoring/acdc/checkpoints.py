"""ACDC checkpoints: the state at a node boundary, written atomically and read back safely.

A checkpoint holds the mask, scores, decisions, position and current metric of a run, and a
*fingerprint* (model weights hash, data hash, graph shape, method, tau, metric, abs_value,
ablation, and for guided ACDC its options and estimates hash): a run given the same path
resumes after the last finished node and refuses a checkpoint written by another run.

The file is a ``torch.save`` archive read with ``torch.load(weights_only=True)``: nothing in
it can run code. Version 2 (written now) holds tensors and plain Python values only; version
1 (written before) held numpy arrays, which are allowed as data (numpy's array
reconstruction, nothing else). A file that asks for anything else, e.g. a crafted pickle that
would call ``os.system``, is refused with an :class:`~acdc_engine.errors.AcdcError` before
anything in it runs.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...errors import AcdcError
from ...graph import Graph
from ...problem import Problem
from .config import AcdcConfig

__all__ = ["CHECKPOINT_VERSION", "Checkpoint", "fingerprint", "run_settings", "save_checkpoint",
           "load_checkpoint", "checkpoint_problem"]

CHECKPOINT_VERSION = 2
"""The format version ACDC checkpoints are written in (version 1 files are still read)."""
_READABLE = (1, 2)  # 1: numpy arrays (read only); 2: tensors and plain values


@dataclass
class Checkpoint:
    """A run's state after ``position`` nodes of the visit order."""

    position: int
    keep: np.ndarray  # [n_writers, n_readers] bool
    scores: torch.Tensor  # [n_edges] float32
    tested: torch.Tensor  # [n_edges] bool
    decisions: list[tuple[int, bool]]  # (edge id, removed), in test order
    damages: list[float]  # every test's damage (single edges and groups), in order
    cur: float  # the metric under the current mask
    full: float  # the full model's metric
    seconds: float  # time spent so far, over every resumed part
    evaluations: tuple[int, int]  # (candidate evaluations, node re-runs) so far


def fingerprint(problem: Problem, settings: dict) -> dict:
    """What a checkpoint must agree on: model weights, data, graph shape and ``settings``.
    The data is every rank's (:attr:`Problem.all_batches`), so any number of ranks agrees."""
    h = hashlib.sha256()
    for b in problem.all_batches:
        h.update(b.clean.cpu().numpy().tobytes())
        h.update(b.corrupted.cpu().numpy().tobytes())
        h.update(b.answer.cpu().numpy().tobytes())
        extra = [b.answer_set, b.wrong_set] + ([] if b.last_only else
                                               [b.positions, b.answers, b.wrongs])
        for t in extra:  # what the metric reads besides the last answer (none: as before)
            if t is not None:
                h.update(t.cpu().numpy().tobytes())
    g = problem.graph
    return {"model": problem.model.weights_hash, "data": h.hexdigest()[:16],
            "graph": [g.n_layers, g.n_heads, g.parallel, g.attn_only], **settings}


def run_settings(problem: Problem, config: AcdcConfig) -> dict:
    """The settings part of the fingerprint: what changes the decisions besides model and data."""
    out = {"method": config.label, "tau": float(config.tau), "metric": problem.metric.name,
           "abs_value": bool(config.abs_value), "ablation": problem.ablation.kind}
    guide = config.guide
    if guide is not None:
        est = guide.estimates.detach().float().cpu()
        out.update(keep_factor=guide.keep_factor, group_fraction=guide.group_fraction,
                   estimates=hashlib.sha256(est.numpy().tobytes()).hexdigest()[:16])
    return out


def checkpoint_problem(path: str | Path) -> str | None:
    """Why a checkpoint cannot be written at ``path`` (None when it can), checked without
    writing anything: a directory given as the file, a parent that cannot be created (a file
    on the way), a location that is not writable (a read-only file system)."""
    p = Path(path).expanduser()
    if p.is_dir():
        return f"{p} is a directory; give the checkpoint a file name in it"
    existing = p.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"its directory {p.parent} cannot be created: {existing} is a file"
    if p.exists():
        if not os.access(p, os.W_OK) or not os.access(existing, os.W_OK):
            return f"{p} is not writable"
    elif not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable (a read-only file system or directory?)"
    return None


def save_checkpoint(path: Path, ckpt: Checkpoint, fp: dict) -> None:
    """Write ``ckpt`` (version 2: tensors and plain values) to ``path`` atomically."""
    state = {
        "version": CHECKPOINT_VERSION, "fingerprint": fp, "position": int(ckpt.position),
        "keep": torch.from_numpy(np.ascontiguousarray(ckpt.keep, dtype=bool)),
        "scores": ckpt.scores, "tested": ckpt.tested,
        "decisions": torch.tensor(ckpt.decisions, dtype=torch.int64).reshape(-1, 2),
        "damages": torch.tensor(ckpt.damages, dtype=torch.float64),
        "cur": float(ckpt.cur), "full": float(ckpt.full), "seconds": float(ckpt.seconds),
        "evaluations": tuple(int(x) for x in ckpt.evaluations),
    }
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, tmp)
        os.replace(tmp, path)  # atomic: a reader sees the old file or the new one
    except (OSError, RuntimeError) as e:  # torch says "PytorchStreamWriter failed ..."
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        why = e.strerror if isinstance(e, OSError) and e.strerror else \
            (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise AcdcError(f"cannot write the ACDC checkpoint {path}: {why}") from None


def _numpy_globals() -> list:
    """What a version-1 file needs: its numpy arrays (bool, int64, float64) as data, under
    numpy 1 and numpy 2 names."""
    core = getattr(np, "_core", None) or np.core
    rebuild = core.multiarray._reconstruct
    dtypes = [type(np.dtype(t)) for t in (np.bool_, np.int64, np.float64)]
    return [np.ndarray, np.dtype, *dtypes, (rebuild, "numpy.core.multiarray._reconstruct"),
            (rebuild, "numpy._core.multiarray._reconstruct")]


_TORCH_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def _read(path: Path) -> dict:
    """The unpickled state, without running anything from the file."""
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found:
            raise AcdcError(
                f"checkpoint {path} is not a safe ACDC checkpoint: it asks to load "
                f"'{found[1]}', which a checkpoint never holds, so it was refused without "
                "running anything from it; delete it (if you did not write it, do not trust "
                "it) or use another checkpoint path") from None
        lines = [ln.strip() for ln in str(e).splitlines()]
        detail = " ".join(ln for ln in lines if ln and not ln.startswith(_TORCH_BOILERPLATE))
        raise AcdcError(f"checkpoint {path} is not a valid ACDC checkpoint: it cannot be read "
                        f"as data ({detail or 'unreadable'}); nothing from it was run; delete "
                        "it to start over") from None
    except Exception as e:
        raise AcdcError(f"checkpoint {path} is not a valid ACDC checkpoint: it cannot be read "
                        f"({type(e).__name__}: {e}); delete it to start over") from None
    if not isinstance(state, dict):
        raise AcdcError(f"checkpoint {path} is not a valid ACDC checkpoint (it holds a "
                        f"{type(state).__name__}, not a state); delete it to start over")
    return state


def _parse(state: dict, g: Graph) -> Checkpoint:
    """A :class:`Checkpoint` from a version-1 or version-2 state; ValueError if malformed."""
    keep = np.asarray(state["keep"], dtype=bool)
    scores, tested = torch.as_tensor(state["scores"]), torch.as_tensor(state["tested"])
    decisions = np.asarray(state["decisions"], dtype=np.int64).reshape(-1, 2)
    damages = np.asarray(state["damages"], dtype=np.float64).reshape(-1)
    evaluations = tuple(int(x) for x in state["evaluations"])
    if keep.shape != (g.n_writers, g.n_readers):
        raise ValueError(f"its mask has shape {keep.shape}")
    if scores.shape != (g.n_edges,) or tested.shape != (g.n_edges,):
        raise ValueError("its scores do not match the graph")
    position = int(state["position"])
    if not 0 <= position <= len(g.nodes) - 1 or len(evaluations) != 2:
        raise ValueError(f"its position {position} is outside the visit order")
    return Checkpoint(
        position=position, keep=keep, scores=scores.float().clone(),
        tested=tested.bool().clone(),
        decisions=[(int(e), bool(r)) for e, r in decisions.tolist()],
        damages=[float(x) for x in damages.tolist()], cur=float(state["cur"]),
        full=float(state["full"]), seconds=float(state["seconds"]), evaluations=evaluations)


def load_checkpoint(path: Path, fp: dict, g: Graph) -> Checkpoint | None:
    """The checkpoint at ``path`` (None if there is none), after checking that it is a safe,
    well-formed checkpoint of this run (fingerprint ``fp``) on graph ``g``."""
    if not path.exists():
        return None
    state = _read(path)
    if state.get("version") not in _READABLE:
        raise AcdcError(f"checkpoint {path} has version {state.get('version')!r}, expected "
                        f"one of {list(_READABLE)}; delete it to start over")
    old = state.get("fingerprint", {})
    if not isinstance(old, dict):
        old = {}
    diff = [k for k in sorted(set(old) | set(fp), key=str) if old.get(k) != fp.get(k)]
    if diff:
        what = ", ".join(f"{k} {old.get(k)!r} vs {fp.get(k)!r}" for k in diff[:4])
        raise AcdcError(f"checkpoint {path} was written by a different run ({what}); use "
                        "another checkpoint path or delete it")
    try:
        return _parse(state, g)
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        detail = f"missing {e}" if isinstance(e, KeyError) else str(e)
        raise AcdcError(f"checkpoint {path} is not a valid ACDC checkpoint ({detail}); "
                        "delete it to start over") from None
