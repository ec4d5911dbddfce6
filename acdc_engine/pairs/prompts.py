"""Reading plain prompts: one prompt a line, with an optional answer after a tab.

    When Mary and John went to the store, John gave a drink to
    When Mary and John went to the store, John gave a drink to<TAB>Mary
    # a comment; blank lines are skipped too

The answer field is a word: it follows the prompt after one space (``Mary`` is the token
``" Mary"``). For an answer that does not start with a space, write it as a JSON string
(``"32"`` after ``... the year 17``). Answers can also come from a separate file, one a line in
the same form, for the prompts in order (``--answers``). A prompt without an answer gets the
model's own top prediction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import AcdcError

__all__ = ["PairsError", "Prompt", "parse_answer", "read_prompts"]


class PairsError(AcdcError):
    """Prompts that cannot be made into pairs: an empty file, answers that do not match,
    a strategy that kept no pair."""


@dataclass(frozen=True)
class Prompt:
    """One clean prompt: its ``line`` in the file (its index + 1 for a list), its ``text``, and
    the ``answer`` token's text (with its leading space) or None for the model's prediction."""

    line: int
    text: str
    answer: str | None = None


def parse_answer(field: str, where: str) -> str:
    """An answer field as its token text: a JSON string as written, a word after one space."""
    field = field.strip()
    if field.startswith('"'):
        try:
            value = json.loads(field)
        except json.JSONDecodeError as e:
            raise PairsError(f"{where}: the answer {field} is not a valid JSON string "
                             f"({e.msg})") from None
        if not isinstance(value, str) or not value:
            raise PairsError(f"{where}: the answer {field} must be a non-empty JSON string")
        return value
    if not field:
        raise PairsError(f"{where}: empty answer after the tab")
    return " " + field


def _lines(path: Path) -> list[tuple[int, str]]:
    if not path.is_file():
        raise PairsError(f"prompts file {str(path)!r} does not exist"
                         if not path.exists() else f"{str(path)!r} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise PairsError(f"prompts file {str(path)!r} is not UTF-8 text ({e.reason} at byte "
                         f"{e.start})") from None
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r\n")
        if line.strip() and not line.lstrip().startswith("#"):
            out.append((n, line))
    return out


def read_prompts(path: str | Path, answers: str | Path | None = None) -> list[Prompt]:
    """The prompts of a text file (see the module's docstring), each with its line number;
    ``answers``: a file of answers, one a line, for the prompts in order."""
    path = Path(path)
    lines = _lines(path)
    if not lines:
        raise PairsError(f"prompts file {str(path)!r} has no prompts (it is empty, or only "
                         "blank and comment lines)")
    prompts = []
    for n, line in lines:
        text, tab, field = line.partition("\t")
        if not text.strip():
            raise PairsError(f"{path}, line {n}: empty prompt before the tab")
        answer = parse_answer(field, f"{path}, line {n}") if tab else None
        prompts.append(Prompt(n, text.rstrip(), answer))
    if answers is None:
        return prompts
    given = _lines(Path(answers))
    if len(given) != len(prompts):
        raise PairsError(f"answers file {str(answers)!r} has {len(given)} answer(s) for "
                         f"{len(prompts)} prompt(s) in {str(path)!r}: give one a line, in order")
    out = []
    for p, (n, field) in zip(prompts, given):
        if p.answer is not None:
            raise PairsError(f"{path}, line {p.line}: an answer after a tab and an answers "
                             "file: give answers one way")
        out.append(Prompt(p.line, p.text, parse_answer(field, f"{answers}, line {n}")))
    return out


def as_prompts(prompts) -> list[Prompt]:
    """A list of :class:`Prompt`, strings or (prompt, answer) pairs as :class:`Prompt` objects
    (line = index + 1; an answer given here is the token text, leading space included)."""
    out = []
    for i, p in enumerate(prompts, 1):
        if isinstance(p, Prompt):
            out.append(p)
        elif isinstance(p, str):
            out.append(Prompt(i, p))
        elif isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[0], str):
            out.append(Prompt(i, p[0], p[1] or None))
        else:
            raise PairsError(f"prompt {i}: expected a string or a (prompt, answer) pair, got "
                             f"{type(p).__name__}")
        if not out[-1].text.strip():
            raise PairsError(f"prompt {i}: empty prompt")
    if not out:
        raise PairsError("no prompts given")
    return out
