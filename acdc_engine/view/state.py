"""The state of a :class:`~acdc_engine.view.session.Session` and the one way it changes.

:class:`SessionState` owns everything a session holds (the model, the problem, the stack, the
steps, the summary, the cache of evaluations, the clean prefix, the hooks, the lock, the
version and the log) and offers :meth:`~SessionState.changing`: the block holds the lock, and
when it ends the version grows and the log gains a line, so every open page follows. The
sub-views (:mod:`.circuits`, :mod:`.inspect`, :mod:`.hooks`, :mod:`.compare`, :mod:`.notebook`,
:mod:`.console`, :mod:`.server`) read it through public properties and methods only; the verbs
(interventions, undo, the page's JSON) are :class:`~acdc_engine.view.session.Session`'s.
"""

from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from ..interventions import Intervention, InterventionStack, evaluate_interventions
from ..models import LoadedModel
from ..patching import Prefix
from ..problem import Problem
from ..tasks import TaskData
from .circuits import CircuitView
from .hooks import CodeHooks
from .inspect import Inspector
from .paths import PathGuard
from .steps import Step
from .summary import Summarizer, Summary

if TYPE_CHECKING:
    from .session import Session

__all__ = ["SessionState", "CACHED", "LOGGED"]

CACHED = 8
"""How many evaluated sets of interventions a session remembers (undo is then instant)."""
LOGGED = 50
"""How many lines :attr:`Session.log` keeps (the page shows the last 10)."""


@dataclass
class SessionState:
    """What a :class:`~acdc_engine.view.session.Session` holds, and :meth:`changing`.

    Thread-safe: the server calls it from worker threads while a notebook calls it from its
    own; :attr:`version` grows on every change, which is how the page learns of one."""

    model: LoadedModel
    problem: Problem
    data: TaskData
    task: str = ""
    name: str = "session"
    stack: InterventionStack = field(init=False)
    version: int = field(default=0, init=False)
    log: list[str] = field(default_factory=list, init=False)
    _steps: list[Step] = field(default_factory=list, init=False, repr=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    _summary: Summary | None = field(default=None, init=False, repr=False)
    activity: str | None = field(default=None, init=False)
    """What the session is computing now (None when idle); the pages show it."""
    other: Session | None = field(default=None, init=False, repr=False)
    """A second model on the same task, shown side by side (``compare_with``)."""
    paths: PathGuard = field(default_factory=PathGuard, init=False, repr=False)
    """Where the console may open and write files: the results folder and what ``allow``
    added (see :mod:`acdc_engine.view.paths`)."""

    def __post_init__(self):
        self.stack = InterventionStack(self.problem.graph)
        self._summarize = Summarizer(self.problem)
        self._hooks = CodeHooks(self)
        self.circuit = CircuitView(self)
        self.inspect = Inspector(self)
        # the clean run's residual stream per layer: an intervention recomputes only the
        # layers from its first intervened writer on (exact; see patching.Prefix)
        self._prefix = Prefix(self.model.adapter)
        self._summary = self._evaluate(None)

    # ----- what it is -------------------------------------------------------------------------
    @property
    def graph(self):
        return self.problem.graph

    @property
    def summary(self) -> Summary:
        """The summary under the current interventions (computed when they change)."""
        return self._summary

    @property
    def row_order(self) -> torch.Tensor:
        """The row number of each example in batch order (the order of :meth:`per_example`):
        ``[n]``."""
        return self._summarize.rows

    @property
    def answer_ids(self) -> torch.Tensor:
        """The answer token of each example, in batch order: ``[n]``."""
        return self._summarize.answer

    @property
    def wrong_ids(self) -> torch.Tensor | None:
        """The wrong answer's token of each example (``[n]``, batch order), or None."""
        return self._summarize.wrong

    # ----- changing it: the one way in --------------------------------------------------------
    @contextmanager
    def changing(self, message: str | None = "changed from code", *, model: bool = True):
        """``with s.changing("scaled W_O of a1.0"): ...``: the one way the session's state
        changes. The block holds the session's lock; when it ends :attr:`version` grows and
        ``message`` joins :attr:`log` (None: no line), so every open page follows.

        ``model=True`` (code changed the model: weights, a hook): when the block ends, even if
        it fails, everything computed from the model is forgotten and the summary re-evaluated.
        ``model=False`` (the session's own state: the circuit shown, the model compared with):
        nothing is re-evaluated, and a block that raises records nothing."""
        with self._lock:
            if not model:
                yield self
                self._record(message)
                return
            try:
                yield self
            finally:
                self._forget()
                self._changed(message)

    def notify(self, message: str = "changed from code") -> Summary:
        """Tell the views that the model changed outside the session's own methods (e.g. its
        weights were edited, or a hook added by hand): everything computed from the model is
        forgotten, the summary is recomputed and the pages refresh. :meth:`hook` and
        :meth:`changing` do it for you."""
        with self.changing(message):
            pass
        return self._summary

    @property
    def lock(self) -> threading.RLock:
        """The lock every change holds (:meth:`changing`); hold it to make several calls one
        step that no other thread sees half done (a hook's add, evaluation and check)."""
        return self._lock

    @contextmanager
    def busy(self, what: str):
        """Mark a computation in progress (:attr:`activity`; the pages show it)."""
        self.activity = what
        try:
            yield
        finally:
            self.activity = None

    def clear_cache(self, prefix: bool = False) -> None:
        """Forget remembered evaluations (the next one runs the model again); with ``prefix``
        also the clean run's residual stream per layer (the next run starts at layer 0)."""
        with self._lock:
            self._cache.clear()
            if prefix:
                self._prefix.clear()

    def _forget(self) -> None:
        """Drop everything computed from the model: evaluations, the clean prefix, the
        problem's ablated activations (refit for mean ablation) and the inspector's caches."""
        self._cache.clear()
        self._prefix.clear()
        self.problem.clear_cache()
        if self.problem.ablation.kind == "mean":
            self.problem.ablation.fit(self.model.adapter, self.problem.batches)
        self.inspect = Inspector(self)
        self.circuit.forget()  # the full and empty circuits' metric

    def _changed(self, message: str) -> Summary:
        with self.busy(message):
            self._summary = self._evaluate(self._summary)
        self._record(message)
        return self._summary

    def _record(self, message: str | None) -> None:
        self.version += 1
        if message is not None:
            self.log.append(message)
            del self.log[:-LOGGED]

    # ----- evaluation -------------------------------------------------------------------------
    def per_example(self, stack: InterventionStack | None = None):
        """(metric ``[n]``, last-position logits ``[n, vocab]``) in batch order.

        Results are remembered per set of interventions (the last :data:`CACHED`), so undo and
        reset come back at once; :meth:`notify` forgets them."""
        stack = stack or self.stack
        key = tuple(stack.items)
        if key in self._cache:
            self._cache[key] = self._cache.pop(key)  # most recently used last
            return self._cache[key]
        out = evaluate_interventions(self.problem.with_context(prefix=self._prefix), stack,
                                     return_logits=True)
        self._cache[key] = out
        while len(self._cache) > CACHED:
            self._cache.pop(next(iter(self._cache)))
        return out

    def logits_with(self, *extra: Intervention) -> tuple[torch.Tensor, torch.Tensor]:
        """Last-position logits ``[n, vocab]`` (batch order) under the current interventions,
        and with ``extra`` pushed on top of them: both read as one step."""
        with self._lock:
            base = self.per_example()[1]
            trial = InterventionStack(self.graph, list(self.stack.items))
            for iv in extra:
                trial.push(iv)
            return base, self.per_example(trial)[1]

    def _evaluate(self, previous: Summary | None) -> Summary:
        t0 = time.perf_counter()
        values, logits = self.per_example()  # [n], [n, vocab]
        return self._summarize(values, logits, previous, t0)
