"""The :class:`Session`: one live model, one task, a stack of interventions, and what they do.

Every view reads from a session: the ``acdc view`` page (through :mod:`.server`), a notebook
(``_repr_html_``) and plain Python. What code does to the session shows in the page at once,
and what the page does is visible to code::

    from acdc_engine.view import Session
    s = Session.open("tiny-ioi", "ioi")
    s.ablate("a3.1")                 # -> Summary: metric, answer prob, logit diff, flips
    s.command("patch a2.* from corrupted")
    s.undo(); s.reset()
    server = s.serve()               # the same state in the browser (a background thread)
    with s.hook("transformer.h.2.mlp", fn):   # a torch/nnsight hook: the page follows at once
        ...

Interventions go through :mod:`acdc_engine.interventions` (the one patched forward); the
session only keeps the stack, groups what one command pushed into one undoable step, and
summarizes the per-example metric. The views of heads, the logit lens and token attribution
live in :mod:`.inspect`; circuits in :mod:`.circuits`.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import torch

from ..errors import AcdcError
from ..interventions import Intervention, InterventionStack, evaluate_interventions
from ..models import LoadedModel
from ..patching import Prefix, reuse_prefix
from ..problem import Problem
from ..tasks import TaskData
from .circuits import CircuitView
from .compare import compare_state
from .inspect import Inspector
from .notebook import CodeSide, Hook
from .paths import PathGuard

__all__ = ["Session", "Summary", "CACHED"]

CACHED = 8
"""How many evaluated sets of interventions a session remembers (undo is then instant)."""


@dataclass
class Summary:
    """What the model does on the task's examples under the current interventions."""

    metric: float
    """Mean of the task's metric over the examples."""
    prob: float
    """Mean probability of the answer token at the last position (a token-set task such as
    greater-than: the probability mass on its answer set; ``accuracy`` then counts the examples
    whose answer set outweighs their wrong set)."""
    logit_diff: float | None
    """Mean logit(answer) - logit(wrong answer); None when the task has no wrong answers."""
    accuracy: float
    """Share of examples where the answer beats the wrong answer (or is the top token)."""
    delta: float
    """Change of ``metric`` since the previous step."""
    flipped: list[int]
    """Examples (row numbers) whose prediction differs from the unintervened model's."""
    flipped_step: list[int]
    """Examples whose prediction changed at the last step."""
    per_example: list[float]
    """The metric of every example, by row number."""
    ms: float = 0.0
    """Server-side time of the evaluation, in milliseconds."""

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Step:
    text: str
    items: list[Intervention]
    whole: bool = True
    """False once ``restore`` took some of its interventions away: ``text`` (e.g. a pattern,
    ``ablate a1.*``) then no longer says what the step does."""


def _describe(items: list[Intervention]) -> str:
    """What ``items`` do, in one line: ``ablate a1.1, a1.2 zero`` when they share a verb and a
    source, else each in turn."""
    if len({(iv.verb, iv.source) for iv in items}) == 1:
        iv = items[0]
        return f"{iv.verb} {', '.join(i.target for i in items)} {iv.source}"
    return "; ".join(str(iv) for iv in items)


@dataclass
class Session(CodeSide):
    """A loaded model, a task's :class:`Problem`, an intervention stack and an optional circuit.

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
    _steps: list[_Step] = field(default_factory=list, init=False, repr=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False)
    _lock: threading.RLock = field(default_factory=threading.RLock, init=False, repr=False)
    _summary: Summary | None = field(default=None, init=False, repr=False)
    _base_correct: torch.Tensor | None = field(default=None, init=False, repr=False)
    _last_correct: torch.Tensor | None = field(default=None, init=False, repr=False)
    _hooks: list[Hook] = field(default_factory=list, init=False, repr=False)
    activity: str | None = field(default=None, init=False)
    """What the session is computing now (None when idle); the pages show it."""
    other: Session | None = field(default=None, init=False, repr=False)
    """A second model on the same task, shown side by side (:meth:`compare_with`)."""
    paths: PathGuard = field(default_factory=PathGuard, init=False, repr=False)
    """Where the console may open and write files: the results folder and what :meth:`allow`
    added (see :mod:`acdc_engine.view.paths`)."""

    def __post_init__(self):
        self.stack = InterventionStack(self.problem.graph)
        order = [r for b in self.problem.batches for r in b.rows]  # batch order -> row number
        self._rows = torch.tensor(order)
        self._answer = torch.cat([b.answer.cpu() for b in self.problem.batches])
        wrong = [b.wrong for b in self.problem.batches]
        self._wrong = None if any(w is None for w in wrong) else torch.cat(
            [w.cpu() for w in wrong])
        self.circuit = CircuitView(self)
        self.inspect = Inspector(self)
        # the clean run's residual stream per layer: an intervention recomputes only the
        # layers from its first intervened writer on (exact; see patching.Prefix)
        self._prefix = Prefix(self.model.adapter)
        self._summary = self._evaluate(None)

    # ----- opening ----------------------------------------------------------------------------
    @classmethod
    def open(cls, model: str | LoadedModel = "tiny-ioi", task: str | None = None, *,
             run: str | None = None, n_examples: int | None = None, device=None,
             metric: str | None = None) -> Session:
        """Load ``model`` (shipped name, path or hub id) and ``task`` (default: the model's
        task, else ``ioi``), build the problem, and load the circuit of ``run`` if given."""
        from ..api.setup import build_problem, load_model, load_task

        loaded = load_model(model, device=device or "cpu")
        task_name = task or loaded.info.get("task") or "ioi"
        task_obj = load_task(task_name)
        try:
            problem, data = build_problem(loaded, task_obj, metric=metric,
                                          n_examples=n_examples)
        except AcdcError:
            raise
        except Exception as e:  # noqa: BLE001  (the tokenizer's own errors: one line)
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise AcdcError(f"{loaded.id} cannot run the task {task_obj.name!r}: its tokenizer "
                            f"fails on the task's prompts ({msg}); is the task built for "
                            "another model's tokenizer?") from None
        s = cls(loaded, problem, data, task=task_obj.name, name=f"{loaded.id} on {task_obj.name}")
        if run:
            s.allow(run)
            s.circuit.load(run)
        return s

    def allow(self, path) -> None:
        """Let the console open ``path`` (a run directory or file given on the command line or
        by code) besides the results folder; see :mod:`acdc_engine.view.paths`."""
        from pathlib import Path

        if Path(path).expanduser().exists():
            self.paths.allow(path)

    # ----- what it is -------------------------------------------------------------------------
    @property
    def graph(self):
        return self.problem.graph

    @property
    def summary(self) -> Summary:
        """The summary under the current interventions (computed when they change)."""
        return self._summary

    @property
    def interventions(self) -> list[str]:
        return [str(iv) for iv in self.stack.items]

    @property
    def steps(self) -> list[str]:
        """The steps as the page lists them, saying what each has in force now: a step's own
        words while all of it applies as pushed; after ``restore`` took part of it away, the
        interventions it has left; where a later step intervenes on the same writer, what of
        it that replaced (the removed edges of a writer all read the source pushed last)."""
        with self._lock:
            return [self._step_text(i) for i in range(len(self._steps))]

    def _step_text(self, i: int) -> str:
        st = self._steps[i]
        later = [iv for s in self._steps[i + 1:] for iv in s.items]
        slots = {}
        for iv in [*st.items, *later]:
            if iv not in slots:
                w, sl = self.stack._slots(iv)
                slots[iv] = (w, set(sl))
        last_source = {slots[iv][0]: iv.source for iv in [*st.items, *later]}
        live, replaced, resourced = [], [], []
        for iv in st.items:
            w, mine = slots[iv]
            covered = set().union(*[slots[x][1] for x in later if slots[x][0] == w])
            if mine <= covered:
                replaced.append(iv.target)
            elif last_source[w] != iv.source:
                resourced.append(iv.target)
                live.append(Intervention(iv.verb, iv.target, last_source[w]))
            else:
                live.append(iv)
        text = st.text if st.whole else _describe(st.items)
        if not live:
            return f"{text} (replaced by a later step)"
        if not (replaced or resourced):
            return text
        notes = []
        if replaced:
            notes.append(f"{', '.join(replaced)} replaced by a later step")
        if resourced:
            notes.append(f"{', '.join(resourced)} now read the source a later step set")
        return f"{_describe(live)} (of '{text}': {'; '.join(notes)})"

    def tokens(self, ids: list[int] | torch.Tensor) -> list[str]:
        """Readable token strings of ``ids``."""
        tok = self.model.tokenizer
        ids = [int(i) for i in ids]
        if tok is None:
            return [str(i) for i in ids]
        return [tok.decode([i]) for i in ids]

    # ----- interventions --------------------------------------------------------------------
    def expand(self, pattern: str) -> list[str]:
        """Node or edge names matching ``pattern`` (``a5.*``, ``m*``, ``a1.0->logits``)."""
        g = self.graph
        if not any(c in pattern for c in "*?["):
            return [pattern]
        pool = [n.name for n in g.writers] if "->" not in pattern else list(g.edge_index)
        names = [n for n in pool if fnmatch.fnmatchcase(n, pattern)]
        if not names:
            raise AcdcError(f"{pattern!r} matches no node of this model ({g.n_layers} layers, "
                            f"{g.n_heads} heads; nodes are 'input', 'a{{layer}}.{{head}}', "
                            "'m{layer}')")
        return names

    def intervene(self, text: str) -> Summary:
        """Apply one intervention command (``"ablate a3.1 mean"``, ``"freeze m2"``,
        ``"patch a5.* from corrupted"``) as one undoable step; nothing changes on an error."""
        words = text.split()
        if len(words) < 2:
            raise AcdcError(f"cannot read intervention {text!r} (e.g. 'ablate a3.1 zero', "
                            "'freeze m2', 'patch a5.* from corrupted')")
        items = [Intervention.parse(" ".join([words[0], name, *words[2:]]))
                 for name in self.expand(words[1])]
        with self._lock:
            trial = InterventionStack(self.graph, list(self.stack.items))
            for iv in items:
                try:
                    trial.push(iv)
                except KeyError as e:
                    raise AcdcError(str(e.args[0]) if e.args else str(e)) from None

            def push():
                self.stack.items[:] = trial.items
                self._steps.append(_Step(" ".join(words), items))
            return self._apply(push, " ".join(words))

    def ablate(self, target: str, source: str = "zero") -> Summary:
        """Replace what ``target`` (node, edge or pattern) writes with ``source`` (zero, mean,
        corrupted)."""
        return self.intervene(f"ablate {target} {source}")

    def freeze(self, target: str) -> Summary:
        """Pin ``target``'s output to the clean run's, whatever happens upstream."""
        return self.intervene(f"freeze {target}")

    def patch(self, target: str, source: str = "corrupted") -> Summary:
        return self.intervene(f"patch {target} {source}")

    def undo(self) -> Summary:
        """Take back the last step (all the interventions one command pushed)."""
        with self._lock:
            if not self._steps:
                raise AcdcError("nothing to undo")
            step = self._steps[-1]

            def pop():
                self._steps.pop()
                del self.stack.items[len(self.stack.items) - len(step.items):]
            return self._apply(pop, f"undo {step.text}")

    def restore(self, target: str) -> Summary:
        """Remove every intervention on ``target`` (a node or edge name), wherever it was
        pushed; steps left empty disappear."""
        with self._lock:
            if target not in {iv.target for iv in self.stack.items}:
                raise AcdcError(f"{target} has no intervention to remove "
                                f"(intervened: {', '.join(self._targets()) or 'nothing'})")
            def remove():
                self.stack.items[:] = [iv for iv in self.stack.items if iv.target != target]
                steps = []
                for st in self._steps:
                    kept = [iv for iv in st.items if iv.target != target]
                    steps.append(_Step(st.text, kept, st.whole and len(kept) == len(st.items)))
                self._steps = [st for st in steps if st.items]
            return self._apply(remove, f"restore {target}")

    def reset(self) -> Summary:
        """Remove every intervention."""
        with self._lock:
            def clear():
                self._steps = []
                self.stack.clear()
            return self._apply(clear, "reset")

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

    def notify(self, message: str = "changed from code") -> Summary:
        """Tell the views that the model changed outside the session's own methods (e.g. its
        weights were edited, or a hook added by hand): everything computed from the model is
        forgotten, the summary is recomputed and the pages refresh. :meth:`hook` and
        :meth:`changing` call it for you."""
        with self._lock:
            self._forget()
            return self._changed(message)

    def _forget(self) -> None:
        """Drop everything computed from the model: evaluations, the clean prefix, the
        problem's ablated activations (refit for mean ablation) and the inspector's caches."""
        self._cache.clear()
        self._prefix.clear()
        self.problem.clear_cache()
        if self.problem.ablation.kind == "mean":
            self.problem.ablation.fit(self.model.adapter, self.problem.batches)
        self.inspect = Inspector(self)
        if hasattr(self.circuit, "_ends"):
            self.circuit._ends = None  # the full and empty circuits' metric

    def _apply(self, change, message: str) -> Summary:
        """Make ``change`` to the stack and steps, then evaluate; if the evaluation fails the
        stack and steps are put back as they were (the session keeps its state)."""
        items, steps = list(self.stack.items), list(self._steps)
        change()
        try:
            return self._changed(message)
        except BaseException:
            self.stack.items[:] = items
            self._steps = steps
            raise

    def _changed(self, message: str) -> Summary:
        with self.busy(message):
            self._summary = self._evaluate(self._summary)
        self.version += 1
        self.log.append(message)
        del self.log[:-50]
        return self._summary

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
        with reuse_prefix(self._prefix):
            out = evaluate_interventions(self.problem, stack, return_logits=True)
        self._cache[key] = out
        while len(self._cache) > CACHED:
            self._cache.pop(next(iter(self._cache)))
        return out

    def _set_masses(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(mass on answer_set, mass on wrong_set)`` per example ([n] each, batch order), or
        None when the task has no answer sets (answers are single tokens)."""
        batches = self.problem.batches
        if any(b.answer_set is None for b in batches):
            return None
        probs = logits.float().softmax(-1).split([len(b) for b in batches])
        cpu = [b.to("cpu") for b in batches]
        good = torch.cat([b.set_mass(p, "answer_set") for b, p in zip(cpu, probs)])
        bad = [b.set_mass(p, "wrong_set") if b.wrong_set is not None else torch.zeros(len(b))
               for b, p in zip(cpu, probs)]
        return good, torch.cat(bad)

    def _evaluate(self, previous: Summary | None) -> Summary:
        t0 = time.perf_counter()
        values, logits = self.per_example()  # [n], [n, vocab]
        n = torch.arange(len(values))
        sets = self._set_masses(logits)
        if sets is not None:  # a token-set task (greater-than): mass on each set
            probs, wrong_mass = sets
            diff, correct = None, probs > wrong_mass
        elif self._wrong is not None:
            probs = logits.softmax(-1)[n, self._answer]  # [n]
            diff = logits[n, self._answer] - logits[n, self._wrong]  # [n]
            correct = diff > 0
        else:
            probs = logits.softmax(-1)[n, self._answer]  # [n]
            diff = None
            correct = logits.argmax(-1) == self._answer
        if self._base_correct is None:
            self._base_correct = correct
        prev_correct = correct if self._last_correct is None else self._last_correct
        self._last_correct = correct
        rows = self._rows
        order = torch.argsort(rows)  # batch order -> row order
        return Summary(
            metric=float(values.mean()), prob=float(probs.mean()),
            logit_diff=None if diff is None else float(diff.mean()),
            accuracy=float(correct.float().mean()),
            delta=0.0 if previous is None else float(values.mean()) - previous.metric,
            flipped=sorted(rows[correct != self._base_correct].tolist()),
            flipped_step=sorted(rows[correct != prev_correct].tolist()),
            per_example=values[order].tolist(),
            ms=1000 * (time.perf_counter() - t0),
        )

    # ----- everything a page needs ------------------------------------------------------------
    def state(self) -> dict:
        """The session as JSON: model, graph, interventions, summary, circuit, log."""
        g = self.graph
        with self._lock:
            s = self.summary.as_dict()
            return {
                "name": self.name, "model": self.model.id, "task": self.task,
                "metric": self.problem.metric.name, "version": self.version,
                "graph": {**g.shape(), "n_edges": g.n_edges},
                "n_examples": self.problem.n_examples,
                "interventions": self.interventions, "hooks": self.hooks,
                # the page lists the steps; hooks added from code are listed after them
                "steps": self.steps + [f"hook on {n} (from code)" for n in self.hooks],
                "targets": self._targets(), "summary": s,
                "circuit": self.circuit.info(), "log": self.log[-10:],
                "compare": compare_state(self),
            }

    def _targets(self) -> dict[str, str]:
        """Intervened node or edge -> its source (the page marks them on the map)."""
        return {iv.target: iv.source for iv in self.stack.items}

    def prompt(self, example: int) -> dict:
        """Row ``example`` of the task: its text, tokens and answers."""
        if not 0 <= example < len(self.data):
            raise AcdcError(f"no example {example}: the task has {len(self.data)} "
                            f"(0 to {len(self.data) - 1})")
        row = self.data.rows[example]
        return {"example": example, "clean": row.get("clean"), "corrupted": row.get("corrupted"),
                "answer": row.get("answer"), "wrong": row.get("wrong_answer"),
                "tokens": self.tokens(self.data.clean[example])}

    def command(self, text: str) -> dict:
        """Run one console line (see :mod:`.console`); returns ``{"ok", "message", ...}``."""
        from .console import run_command

        return run_command(self, text)

    def compare_with(self, other: Session | None) -> None:
        """Show ``other`` (a second model on the same task) side by side; None stops."""
        if other is not None and other.task != self.task:
            raise AcdcError(f"compare models on one task: {self.task!r} vs {other.task!r}")
        with self._lock:
            self.other = other
            self.version += 1

    # ----- sharing ----------------------------------------------------------------------------
    def serve(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
              open_browser: bool = False):
        """Serve this session in a background thread (a notebook keeps working); returns the
        running :class:`~acdc_engine.view.server.ViewServer` (``.url``, ``.stop()``)."""
        from .server import ViewServer

        return ViewServer(self, host=host, port=port, token=token).start(open_browser)

    def _repr_html_(self) -> str:
        from .notebook import session_html

        return session_html(self)

    def __repr__(self) -> str:
        s = self.summary
        return (f"Session({self.name!r}, {len(self.stack.items)} intervention(s), "
                f"{self.problem.metric.name}={s.metric:.4g})")
