"""Pairs from plain prompts: :func:`make_pairs` (in memory) and :func:`make_pairs_file`.

For each clean prompt: the answer (given, or the model's top prediction), the strategy's
corrupted prompts (the first with the clean prompt's token length), the model on it, the margin
check and the wrong answer (:mod:`.verify`). A row that fails any step is rejected with its
reason; the rest are the pairs, in the format of docs/pairs.md.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .prompts import PairsError, Prompt, as_prompts, read_prompts
from .strategies import STRATEGIES, Context, Reject, Tokens
from .verify import Verifier

__all__ = ["DEFAULT_MARGIN", "PairsResult", "make_pairs", "make_pairs_file", "rejected_path"]

DEFAULT_MARGIN = 0.1
"""How much the corrupted prompt must move the answer's probability (absolute, 0 to 1)."""


@dataclass
class PairsResult:
    """The ``kept`` pairs (rows of docs/pairs.md's format, with ``line``, ``strategy`` and the
    answer's probability on each prompt) and the ``rejected`` rows (``line``, ``clean``,
    ``reason``, ``detail``)."""

    strategy: str
    margin: float
    n_prompts: int
    kept: list[dict] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)

    def counts(self) -> Counter:
        """Rejections per reason."""
        return Counter(r["reason"] for r in self.rejected)

    def report(self, out: str | Path | None = None, side: str | Path | None = None) -> str:
        """The survival report: how many kept, how many rejected per reason (with a first
        example line each)."""
        lines = [f"strategy {self.strategy}, margin {self.margin:g}: kept {len(self.kept)} of "
                 f"{self.n_prompts} prompt(s)" + (f" -> {out}" if out else "")]
        if self.rejected:
            lines.append(f"rejected {len(self.rejected)}" + (f" -> {side}" if side else "")
                         + ":")
            for reason, n in self.counts().most_common():
                first = next(r for r in self.rejected if r["reason"] == reason)
                lines.append(f"  {n:4d}  {reason:<13} e.g. line {first['line']}: "
                             f"{first['detail']}")
        return "\n".join(lines)

    def check_kept(self, source: str) -> None:
        """Raise :class:`PairsError` (one line, every reason with its first row) when no pair
        was kept."""
        if self.kept:
            return
        why = "; ".join(
            f"{n} {reason} (line {r['line']}: {r['detail']})"
            for reason, n in self.counts().most_common()
            for r in [next(x for x in self.rejected if x["reason"] == reason)])
        raise PairsError(f"strategy {self.strategy!r} kept no pair of the {self.n_prompts} "
                         f"prompt(s) in {source}: {why}")


def _check(strategy: str, margin: float) -> None:
    if strategy not in STRATEGIES:
        raise PairsError(f"unknown strategy {strategy!r} (known: {', '.join(STRATEGIES)})")
    if not 0 <= margin < 1:
        raise PairsError(f"the margin is a change of probability, from 0 to 1 (not 1); got "
                         f"{margin}")


def _pair(p: Prompt, verifier: Verifier, ctx: Context, strategy: str, margin: float) -> dict:
    clean = verifier.probs(p.text)
    answer, a = verifier.answer(p.text, p.answer, clean)
    corrupted = verifier.same_length(p.text, STRATEGIES[strategy](p.text, answer, ctx))
    corr = verifier.probs(corrupted)
    change = float(clean[a] - corr[a])
    if abs(change) < margin:
        raise Reject("margin", f"p({answer!r}) {float(clean[a]):.3f} -> {float(corr[a]):.3f}, "
                     f"a change under the margin {margin:g} (corrupted: {corrupted!r})")
    wrong = verifier.wrong_answer(p.text, corr, a)
    return {"clean": p.text, "corrupted": corrupted, "answer": answer, "wrong_answer": wrong,
            "strategy": strategy, "line": p.line, "p_clean": round(float(clean[a]), 4),
            "p_corrupted": round(float(corr[a]), 4)}


def make_pairs(prompts, *, model="gpt2-ioi-bpe", strategy: str = "entity-swap",
               margin: float = DEFAULT_MARGIN, position: int | None = None, seed: int = 0,
               entities: dict[str, list[str]] | None = None) -> PairsResult:
    """Pairs from clean prompts: ``prompts`` are strings, (prompt, answer) pairs or
    :class:`Prompt` objects; ``model`` a name, path or loaded model; ``strategy`` one of
    :data:`STRATEGIES`; ``position`` the token token-swap changes; ``entities`` the words the
    swaps know (kind -> words; default :data:`acdc_engine.pairs.words.ENTITIES`).

    Returns a :class:`PairsResult` (``kept`` and ``rejected``); nothing is raised for a
    rejected row (:meth:`PairsResult.check_kept` refuses a result with no pair)."""
    from ..api.setup import context_length, load_model

    _check(strategy, margin)
    prompts = as_prompts(prompts)
    loaded = load_model(model)
    if loaded.tokenizer is None:
        raise PairsError(f"model {loaded.id!r} has no tokenizer: pairs are made from text")
    tokens = Tokens(loaded.tokenizer)
    ctx = Context(tokens, random.Random(seed), position=position)
    if entities is not None:
        ctx.entities = {k: tuple(v) for k, v in entities.items()}
    verifier = Verifier(loaded, tokens, context_length(loaded))
    result = PairsResult(strategy, margin, len(prompts))
    seen: dict[tuple, int] = {}
    for p in prompts:
        try:
            row = _pair(p, verifier, ctx, strategy, margin)
            key = (row["clean"], row["corrupted"], row["answer"])
            if key in seen:
                raise Reject("duplicate", f"the same pair as line {seen[key]}")
            seen[key] = p.line
            result.kept.append(row)
        except Reject as r:
            result.rejected.append({"line": p.line, "clean": p.text, "reason": r.reason,
                                    "detail": r.detail})
    return result


def rejected_path(out: str | Path) -> Path:
    """Where the rejected rows go: ``pairs.jsonl`` -> ``pairs.rejected.jsonl``."""
    out = Path(out)
    return out.with_name(f"{out.stem}.rejected.jsonl")


def _write_jsonl(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")


def make_pairs_file(prompts: str | Path, out: str | Path | None = None, *,
                    answers: str | Path | None = None, model="gpt2-ioi-bpe",
                    strategy: str = "entity-swap", margin: float = DEFAULT_MARGIN,
                    **options) -> tuple[PairsResult, Path, Path]:
    """Read a prompts file (:func:`read_prompts`), make the pairs (:func:`make_pairs`;
    ``options``: ``position``, ``seed``, ``entities``), write them to ``out`` (default
    ``<prompts>.pairs.jsonl``) and the rejected rows beside it (:func:`rejected_path`), then
    read ``out`` back as a task for the model, as ``acdc discover`` will.

    Returns (result, pairs path, rejected path); :class:`PairsError` when no pair is kept."""
    from ..api.setup import load_data, load_model, load_task

    _check(strategy, margin)
    src = Path(prompts)
    rows = read_prompts(src, answers)
    out = Path(out) if out is not None else src.with_name(f"{src.stem}.pairs.jsonl")
    if out.suffix.lower() != ".jsonl":
        raise PairsError(f"the pairs file is written as JSON Lines: name it *.jsonl, not "
                         f"{out.name!r}")
    loaded = load_model(model)
    result = make_pairs(rows, model=loaded, strategy=strategy, margin=margin, **options)
    side = rejected_path(out)
    _write_jsonl(result.rejected, side)
    result.check_kept(str(src))
    _write_jsonl(result.kept, out)
    load_data(load_task(str(out)), loaded)  # the file reads back as a valid task
    return result, out, side
