"""Reading task rows: :func:`prepare` tokenizes and checks each row.

:class:`RowReader` turns the row format documented in :mod:`acdc_engine.tasks` into the columns
of a :class:`~acdc_engine.tasks.TaskData`, collecting every problem (with the row's name) rather
than stopping at the first.

An answer read at the last prompt position (the default) is tokenized **in context**: when the
clean prompt followed by the answer text tokenizes as the prompt's own tokens plus one more,
that token is the answer. This is the token the model would see next, which differs from the
answer tokenized on its own where a tokenizer treats a text's first word specially
(SentencePiece prepends ``▁``: after ``" 17"`` the year ``"32"`` is the token ``32``, alone it
is ``▁32``). Otherwise (and for answers at other positions) the answer is tokenized alone.
"""

from __future__ import annotations

from ..errors import TaskDataError
from .data import TaskData
from .task import ROW_KEYS, Row, Task

__all__ = ["RowReader", "prepare"]


class RowReader:
    """Tokenizes and checks rows one by one (:func:`prepare`), collecting every problem."""

    def __init__(self, tokenizer, rows: list[Row], multi: bool):
        self.tok, self.multi = tokenizer, multi
        self.has_wrong = all(r.get("wrong_answer") not in (None, "", []) for r in rows)
        self.sets = [s for s in ("answer_set", "wrong_set") if any(s in r for r in rows)]
        self.extra_keys = sorted({k for r in rows for k in r
                                  if k not in ROW_KEYS and not str(k).startswith("_")})
        unk = getattr(tokenizer, "unk_token_id", None)
        special = {getattr(tokenizer, f"{t}_token_id", None) for t in ("bos", "eos", "pad")}
        # word-level vocabularies map a typo to <unk>: one token, but the wrong one
        # (GPT-2's unk is its <|endoftext|>, a real token: not checked)
        self.unk = unk if unk is not None and unk not in special else None
        self.problems: list[str] = []
        self.cols: dict[str, list] = {k: [] for k in (
            "clean", "corrupted", "positions", "answers", "wrongs",
            "answer_set", "wrong_set")}
        self.rows = rows
        self._context_cache: dict[tuple[str, str], list[int] | None] = {}

    def _ids(self, where: str, key: str, text: str) -> list[int]:
        ids = self.tok(text, add_special_tokens=False)["input_ids"]
        if self.unk is not None and self.unk in ids:
            self.problems.append(f"{where}: {key} {text!r} has a word the tokenizer does not "
                                 f"know (it maps to {self.tok.unk_token!r})")
        return ids

    def _texts(self, where: str, key: str, value) -> list[str] | None:
        """A string or a list of strings -> the list (None and a problem otherwise)."""
        if isinstance(value, str):
            return [value]
        if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
            return list(value)
        self.problems.append(f"{where}: {key} must be a string or a non-empty list of strings, "
                             f"got {value!r}")
        return None

    def _tokens(self, where: str, key: str, value, hint: bool = False,
                context: tuple[str, list[int]] | None = None) -> list[int] | None:
        """One token id per entry of ``value`` (None when any entry is not one token).
        ``context``: (the clean prompt, its ids) when the entries follow the prompt."""
        texts = self._texts(where, key, value)
        if texts is None:
            return None
        out = []
        for t in texts:
            ids = self._in_context(context, t) if context is not None else None
            ids = ids or self._ids(where, key, t)
            if len(ids) != 1:
                more = ("; a task with multi_token_answer=True scores it by teacher forcing"
                        if hint and len(ids) > 1 and isinstance(value, str) else "")
                self.problems.append(f"{where}: {key} {t!r} is {len(ids)} tokens, not one "
                                     f"{ids}{more}")
                return None
            out.append(ids[0])
        return out

    def _in_context(self, context: tuple[str, list[int]], text: str) -> list[int] | None:
        """``[id]`` when ``prompt + text`` tokenizes as the prompt's ids plus one id, else None."""
        prompt, prompt_ids = context
        key = (prompt, text)
        if key not in self._context_cache:
            try:
                ids = self.tok(prompt + text, add_special_tokens=False)["input_ids"]
            except Exception:  # e.g. a word-level vocabulary without an unknown token
                ids = []
            n = len(prompt_ids)
            ok = len(ids) == n + 1 and ids[:n] == prompt_ids and ids[-1] != self.unk
            self._context_cache[key] = [ids[-1]] if ok else None
        return self._context_cache[key]

    def _positions(self, where: str, spec, n: int) -> list[int] | None:
        if spec is None:
            return [n - 1]
        if spec == "all":
            return list(range(n))
        if (isinstance(spec, (list, tuple)) and spec
                and all(isinstance(p, int) and not isinstance(p, bool) for p in spec)):
            bad = [p for p in spec if not -n <= p < n]
            if bad:
                self.problems.append(f"{where}: positions {bad} out of range for a {n}-token "
                                     f"prompt (valid: {-n} to {n - 1})")
                return None
            return [p % n for p in spec]
        self.problems.append(f"{where}: positions must be 'all' or a non-empty list of token "
                             f"indices, got {spec!r}")
        return None

    def _per_position(self, where: str, key: str, ids: list[int], k: int) -> list[int] | None:
        if len(ids) == 1:
            return ids * k
        if len(ids) != k:
            self.problems.append(f"{where}: {key} has {len(ids)} entries but the row reads "
                                 f"{k} position(s); give one per read position")
            return None
        return ids

    def _multi(self, where: str, r: Row, c: list[int], k: list[int]):
        """Teacher forcing of a multi-token answer: (clean, corrupted, positions, answers,
        wrongs), or None when the answer is one token (read as usual)."""
        ans = r.get("answer")
        if not isinstance(ans, str):
            return None
        a = self._ids(where, "answer", ans)
        if len(a) <= 1:
            return None
        if r.get("positions") is not None:
            self.problems.append(f"{where}: a multi-token answer sets its read positions; "
                                 f"drop 'positions'")
        w = None
        if self.has_wrong:
            w = self._ids(where, "wrong_answer", r["wrong_answer"])
            if len(w) != len(a):
                self.problems.append(
                    f"{where}: wrong_answer {r['wrong_answer']!r} is {len(w)} tokens but the "
                    f"answer {ans!r} is {len(a)}: with multi_token_answer they must tokenize "
                    f"to the same number of tokens (or leave wrong_answer out)")
                w = None
        n = len(c)
        return c + a[:-1], k + a[:-1], list(range(n - 1, n - 1 + len(a))), a, w

    def read(self, i: int, r: Row) -> None:
        where = f"line {r['_line']}" if r.get("_line") is not None else f"row {i + 1}"
        missing = [k for k in ("clean", "corrupted") if r.get(k) in (None, "")]
        if r.get("answer") in (None, "", []) and not r.get("answer_set"):
            missing.append("answer")
        if missing:
            self.problems.append(f"{where}: missing {', '.join(missing)}")
            return
        before = len(self.problems)
        c = self._ids(where, "clean", r["clean"])
        k = self._ids(where, "corrupted", r["corrupted"])
        if len(c) != len(k):
            self.problems.append(
                f"{where}: clean prompt is {len(c)} tokens but corrupted is {len(k)} "
                f"({r['clean']!r} vs {r['corrupted']!r}); pairs must align token by token")
        if len(c) == 0:
            self.problems.append(f"{where}: the clean prompt is empty after tokenization")
            return
        multi = self._multi(where, r, c, k) if self.multi else None
        if multi is not None:
            c, k, pos, answers, wrongs = multi
        else:
            pos = self._positions(where, r.get("positions"), len(c))
            # answers read at the last prompt position follow the prompt: tokenize in context
            ctx = (r["clean"], c) if r.get("positions") is None else None
            answers = wrongs = None
            if pos is not None:
                if r.get("answer") not in (None, "", []):
                    a = self._tokens(where, "answer", r["answer"], hint=True, context=ctx)
                    answers = a and self._per_position(where, "answer", a, len(pos))
                else:
                    answers = [-1] * len(pos)
                if self.has_wrong:
                    w = self._tokens(where, "wrong_answer", r["wrong_answer"], hint=True,
                                     context=ctx)
                    wrongs = w and self._per_position(where, "wrong_answer", w, len(pos))
        sets = {}
        for s in self.sets:
            if not r.get(s):
                self.problems.append(f"{where}: {s} is missing or empty (other rows have one)")
                continue
            last = multi is None and r.get("positions") is None
            sets[s] = self._tokens(where, s, r[s], context=(r["clean"], c) if last else None)
        if len(self.problems) > before:
            return
        col = self.cols
        col["clean"].append(c)
        col["corrupted"].append(k)
        col["positions"].append(pos)
        col["answers"].append(answers)
        col["wrongs"].append(wrongs)
        for s in self.sets:
            col[s].append(sets[s])

    def data(self, name: str, source: str) -> TaskData:
        col = self.cols
        return TaskData(
            task=name, rows=self.rows, clean=col["clean"], corrupted=col["corrupted"],
            source=source, positions=col["positions"], answers=col["answers"],
            wrongs=col["wrongs"] if self.has_wrong else None,
            answer_set=col["answer_set"] if "answer_set" in self.sets else None,
            wrong_set=col["wrong_set"] if "wrong_set" in self.sets else None,
            extra={key: [r.get(key) for r in self.rows] for key in self.extra_keys})


def prepare(task: Task | str, tokenizer, rows: list[Row], source: str = "") -> TaskData:
    """Tokenize and validate ``rows``; raise :class:`TaskDataError` listing every bad row.

    Rows are named ``row N`` (1-based), or ``line N`` when they carry their line in a data file
    as ``_line`` (see ``acdc_tasks.pairfile``). Notes of a :class:`TaskRows` go to
    ``meta["notes"]``."""
    name = task if isinstance(task, str) else task.name
    multi = False if isinstance(task, str) else task.multi_token_answer
    source = source or f"of task {name!r}"
    if tokenizer is None:
        raise TaskDataError(source, ["the model has no tokenizer; load a model that ships one"])
    if not rows:
        raise TaskDataError(source, ["no rows: the task returned an empty dataset"])
    reader = RowReader(tokenizer, rows, multi)
    for i, r in enumerate(rows):
        reader.read(i, r)
    if reader.problems:
        raise TaskDataError(source, reader.problems)
    out = reader.data(name, source)
    notes = getattr(rows, "notes", None)
    if notes:
        out.meta["notes"] = dict(notes)
    return out
