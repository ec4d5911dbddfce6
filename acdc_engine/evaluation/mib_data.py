"""MIB task data (clean prompts with counterfactuals) as the engine's pairs.

MIB's datasets (``mib-bench/ioi``, ``copycolors_mcqa``, ``arc_easy``, ``arithmetic_*`` on the
Hugging Face hub; read by ``HFEAPDataset`` in MIB's ``MIB_circuit_track/dataset.py``) hold one
clean prompt per row and its counterfactuals as nested objects. Saved locally as JSON (a list
of rows, or ``{"data": [...]}``) or JSON Lines, a file maps to the pairs format
(docs/pairs.md) as MIB's dataset class maps it:

================  =====================================================================
row kind          clean / corrupted / answer / wrong_answer
================  =====================================================================
IOI               ``prompt`` / ``{cf}.prompt`` / ``" " + metadata.indirect_object`` /
                  ``" " + metadata.subject``; ``cf`` default ``s2_io_flip_counterfactual``
MCQA, ARC         ``prompt`` / ``{cf}.prompt`` / ``choices.label[answerKey]`` /
                  ``{cf}.choices.label[{cf}.answerKey]``; ``cf`` default
                  ``symbol_counterfactual``
arithmetic        ``prompt`` / ``{cf}.prompt`` / ``str(label)`` / ``str({cf}.label)``;
                  ``cf`` default ``random_counterfactual``
================  =====================================================================

``cf`` (the counterfactual column) can be named; a row kind's default is used when the row
has it, else the row's only ``*_counterfactual`` column. Rows that cannot be mapped are listed
in one :class:`~acdc_engine.errors.TaskDataError`.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import AcdcError, TaskDataError

__all__ = ["read_mib_rows", "mib_rows_to_pairs", "write_mib_pairs"]

_DEFAULT_CF = {"ioi": "s2_io_flip_counterfactual", "choices": "symbol_counterfactual",
               "arithmetic": "random_counterfactual"}


def read_mib_rows(path: str | Path) -> list[dict]:
    """The rows of a local MIB data file: JSON (a list, or an object with a ``data`` or
    ``rows`` list) or JSON Lines."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise AcdcError(f"cannot read MIB data {path}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict):
        data = data.get("data", data.get("rows"))
    if isinstance(data, list):
        rows = data
    else:
        rows, problems = [], []
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                problems.append(f"line {i}: not JSON ({e})")
        if problems:
            raise TaskDataError(str(path), problems)
    if not rows:
        raise AcdcError(f"MIB data {path} has no rows")
    return rows


def _kind(row: dict) -> str:
    if isinstance(row.get("metadata"), dict) and "indirect_object" in row["metadata"]:
        return "ioi"
    if "choices" in row and "answerKey" in row:
        return "choices"
    if "label" in row:
        return "arithmetic"
    raise KeyError("not an IOI (metadata.indirect_object), multiple-choice (choices, "
                   "answerKey) or arithmetic (label) row")


def _cf(row: dict, kind: str, name: str | None) -> dict:
    if name is None:
        name = _DEFAULT_CF[kind]
        if name not in row:
            found = [k for k in row if k.endswith("_counterfactual")]
            if len(found) != 1:
                raise KeyError(f"no {name!r}; name the counterfactual column (found "
                               f"{found or 'none'})")
            name = found[0]
    cf = row.get(name)
    if not isinstance(cf, dict) or not isinstance(cf.get("prompt"), str):
        raise KeyError(f"counterfactual {name!r} is missing or has no prompt")
    return cf


def _label(choices: dict, key) -> str:
    return str(choices["label"][int(key)])


def _pair(row: dict, counterfactual: str | None) -> dict:
    kind = _kind(row)
    cf = _cf(row, kind, counterfactual)
    if kind == "ioi":
        meta = row["metadata"]
        answer, wrong = f" {meta['indirect_object']}", f" {meta['subject']}"
    elif kind == "choices":
        answer = _label(row["choices"], row["answerKey"])
        wrong = _label(cf["choices"], cf["answerKey"])
    else:
        answer, wrong = str(row["label"]), str(cf["label"])
    return {"clean": row["prompt"], "corrupted": cf["prompt"], "answer": answer,
            "wrong_answer": wrong}


def mib_rows_to_pairs(rows: list[dict], counterfactual: str | None = None,
                      source: str = "MIB data") -> list[dict]:
    """Engine pairs (``clean, corrupted, answer, wrong_answer``) of MIB rows; every row that
    cannot be mapped is listed in one error."""
    out, problems = [], []
    for i, row in enumerate(rows, 1):
        try:
            if not isinstance(row, dict):
                raise KeyError("not an object")
            out.append(_pair(row, counterfactual))
        except (KeyError, IndexError, TypeError, ValueError) as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else e
            problems.append(f"row {i}: {msg}")
    if problems:
        raise TaskDataError(source, problems)
    return out


def write_mib_pairs(src: str | Path, dst: str | Path, counterfactual: str | None = None) -> Path:
    """Convert the MIB data file ``src`` to a pairs JSONL file ``dst`` (a task file:
    docs/pairs.md); returns ``dst``."""
    pairs = mib_rows_to_pairs(read_mib_rows(src), counterfactual, str(src))
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text("".join(json.dumps(p) + "\n" for p in pairs), encoding="utf-8")
    return dst
