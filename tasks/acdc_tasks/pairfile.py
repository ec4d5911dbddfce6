"""Bring your own pairs: a task defined by a JSONL or CSV file, no code needed.

    acdc discover --model path/to/model --task my_pairs.jsonl
    discover(model="path/to/model", task="my_pairs.csv")
    python -m acdc_tasks.pairfile        # rewrites the shipped example, data/ioi_pairs.jsonl

Each row has ``clean`` and ``corrupted`` prompts, the ``answer`` the model should give after the
clean prompt and, optionally, the ``wrong_answer`` (what the corrupted prompt points to); the
contrastive metrics (``logit_diff``, ``prob_diff``) need it on every row. A JSONL row may use
the rest of the row format of :mod:`acdc_engine.tasks`: ``positions``, per-position answers
(lists), ``answer_set``/``wrong_set``. Other columns are kept in the rows. JSONL: one JSON
object per line (blank lines are skipped). CSV: a header line, then one row per line. The task is
named for the file's stem; it names no model; its default metric is ``logit_diff`` with wrong
answers and ``nll`` without.

The file is read and checked when the task is built, before any model is loaded; every problem
is reported at once with its line number in the file (JSONL: the line; CSV: the line, the header
being line 1): a missing or empty file, a malformed JSON line, missing columns, empty values and
duplicate pairs. Each row carries its line as ``_line``, so the checks that need the model's
tokenizer (:func:`acdc_engine.tasks.prepare`: token lengths, single-token answers) name the same
line numbers.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from acdc_engine.errors import TaskDataError
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported when a task is built: reading and checking rows needs no torch
    from acdc_engine.tasks import Task

__all__ = ["SUFFIXES", "REQUIRED", "EXAMPLE", "read_pairs", "pair_file_task", "write_pairs",
           "write_ioi_example"]

SUFFIXES = (".jsonl", ".csv")
REQUIRED = ("clean", "corrupted", "answer")
OPTIONAL = ("wrong_answer",)
LINE = "_line"  # the key under which every row keeps its line number in the file
EXAMPLE = Path(__file__).parent / "data" / "ioi_pairs.jsonl"


def _read_jsonl(text: str, problems: list[str]) -> list[dict]:
    rows = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"line {n}: not valid JSON ({e.msg}: column {e.colno})")
            continue
        if not isinstance(obj, dict):
            problems.append(f"line {n}: expected a JSON object {{...}}, got {type(obj).__name__}")
            continue
        missing = [k for k in REQUIRED if k not in obj
                   and not (k == "answer" and "answer_set" in obj)]
        if missing:
            problems.append(f"line {n}: missing key(s) {', '.join(missing)}")
            continue
        rows.append({**obj, LINE: n})
    return rows


def _read_csv(text: str, problems: list[str]) -> list[dict]:
    reader = csv.reader(text.splitlines(keepends=True))
    header: list[str] | None = None
    rows = []
    last = 0  # reader.line_num after the previous record: a record starts on the next line
    for fields in reader:
        start, last = last + 1, reader.line_num
        if not any(f.strip() for f in fields):
            continue
        if header is None:
            header = [f.strip() for f in fields]
            missing = [k for k in REQUIRED if k not in header]
            dupes = sorted({h for h in header if header.count(h) > 1})
            if missing:
                problems.append(f"line {start}: the header has no column(s) {', '.join(missing)} "
                                f"(columns: {', '.join(header)})")
            if dupes:
                problems.append(f"line {start}: column(s) {', '.join(dupes)} appear twice")
            if missing or dupes:
                return []
            continue
        if len(fields) != len(header):
            problems.append(f"line {start}: {len(fields)} fields, but the header has "
                            f"{len(header)} (a comma inside a value needs quotes)")
            continue
        rows.append({**dict(zip(header, fields)), LINE: start})
    return rows


ROW_LISTS = ("answer_set", "wrong_set", "positions")  # optional keys of the row format


def _type_problem(key: str, value) -> str | None:
    """What is wrong with the type of ``value`` under ``key`` (None when it is fine): the
    prompts are text; an answer is text, or (JSONL) a list of texts, one per read position;
    a token set is a list of texts; positions are "all" or a list of token indices (the row
    format of :mod:`acdc_engine.tasks`; the tokenizer checks the rest)."""
    texts = isinstance(value, list) and value and all(isinstance(v, str) for v in value)
    if key in ("clean", "corrupted"):
        return None if isinstance(value, str) else f"must be text, got {type(value).__name__}"
    if key in ("answer", "wrong_answer"):
        return None if isinstance(value, str) or texts else (
            "must be text, or a list of texts (one per read position), got "
            f"{json.dumps(value) if isinstance(value, list) else type(value).__name__}")
    if key in ("answer_set", "wrong_set"):
        return None if texts else f"must be a non-empty list of texts (tokens), got {value!r}"
    if key == "positions":
        ints = (isinstance(value, list) and value
                and all(isinstance(v, int) and not isinstance(v, bool) for v in value))
        return None if value == "all" or ints else (
            f"must be \"all\" or a non-empty list of token indices, got {value!r}")
    return None


def _empty(value) -> bool:
    if isinstance(value, list):
        return not value or any(not v.strip() for v in value)
    return value is None or not value.strip()


def read_pairs(path: str | Path) -> list[dict]:
    """The rows of a pair file, each with its line number under ``_line``.

    Raises :class:`~acdc_engine.errors.TaskDataError` listing every problem that can be found
    without a tokenizer.
    """
    path = Path(path)
    source = f"file {str(path)!r}"
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise TaskDataError(source, [f"unknown kind of file {suffix!r}; use .jsonl or .csv"])
    if not path.is_file():
        what = "is a directory, not a file" if path.is_dir() else "does not exist"
        raise TaskDataError(source, [f"the file {what}"])
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise TaskDataError(source, [f"not UTF-8 text ({e.reason} at byte {e.start})"]) from None
    except OSError as e:
        raise TaskDataError(source, [f"cannot read the file: {e.strerror or e}"]) from None
    if not text.strip():
        raise TaskDataError(source, ["the file is empty: no pairs"])

    problems: list[str] = []
    rows = _read_jsonl(text, problems) if suffix == ".jsonl" else _read_csv(text, problems)
    if not rows and not problems:
        problems.append("no pairs: the file has a header but no rows" if suffix == ".csv"
                        else "no pairs: the file has only blank lines")
    # wrong answers are all or nothing: one given makes every empty one a problem
    wants_wrong = any(r.get("wrong_answer") not in (None, "", []) for r in rows)
    seen: dict[str, int] = {}
    for r in rows:
        n = r[LINE]
        keys = [*REQUIRED, *(OPTIONAL if wants_wrong else ())]
        if "answer" not in r:  # a row with an answer_set alone
            keys.remove("answer")
        bad = [f"{k} {_type_problem(k, r[k])}" for k in (*keys, *ROW_LISTS)
               if r.get(k) is not None and _type_problem(k, r[k])]
        if bad:
            problems.append(f"line {n}: {'; '.join(bad)}")
            continue
        empty = [k for k in keys if _empty(r.get(k))]
        if empty:
            problems.append(f"line {n}: empty {', '.join(empty)}"
                            + (" (other lines have one: give it on every line or on none)"
                               if empty == ["wrong_answer"] else ""))
            continue
        key = json.dumps([r["clean"], r["corrupted"], r.get("answer"), r.get("answer_set")])
        if key in seen:
            problems.append(f"line {n}: duplicate of line {seen[key]} (same clean, corrupted "
                            "and answer)")
        else:
            seen[key] = n
    if problems:
        raise TaskDataError(source, problems)
    return rows


def pair_file_task(path: str | Path) -> Task:
    """A :class:`~acdc_engine.tasks.Task` from a pair file, checked now (see :func:`read_pairs`).

    ``rows(n, seed)`` returns the first ``n`` rows in file order (all by default), so a run uses
    the same pairs whatever its seed.
    """
    path = Path(path)
    rows = read_pairs(path)
    has_wrong = all(r.get("wrong_answer") not in (None, "", []) for r in rows)

    def file_rows(n: int | None, seed: int = 0) -> list[dict]:
        return [dict(r) for r in (rows if n is None else rows[:n])]

    from acdc_engine.tasks import Task

    return Task(
        name=path.stem,
        rows=file_rows,
        description=f"{len(rows)} clean/corrupted pairs from {path}",
        default_metric="logit_diff" if has_wrong else "nll",
        default_ablation="corrupted",
        default_n=len(rows),
        model=None,
    )


def write_pairs(rows: list[dict], path: str | Path) -> Path:
    """Write ``rows`` as a pair file: JSONL or CSV by the suffix of ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{k: v for k, v in r.items() if k != LINE} for r in rows]
    if path.suffix.lower() == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                        encoding="utf-8")
    elif path.suffix.lower() == ".csv":
        columns = list(dict.fromkeys(k for r in rows for k in r))
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)
    else:
        raise ValueError(f"write .jsonl or .csv, not {path.suffix!r}")
    return path


def write_ioi_example(path: str | Path = EXAMPLE, n: int = 40, seed: int = 7) -> Path:
    """The shipped example: ``n`` IOI pairs from :func:`acdc_tasks.ioi.make_pairs`, made for the
    ``tiny-ioi`` model (space-separated words; answers with a leading space)."""
    from .ioi import make_pairs

    return write_pairs(make_pairs(n, seed=seed), path)


if __name__ == "__main__":
    print(write_ioi_example())
