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
summarizes the per-example metric (:mod:`.summary`). The views of heads, the logit lens and
token attribution live in :mod:`.inspect`, circuits in :mod:`.circuits`, hooks in :mod:`.hooks`.

The session owns its state (:mod:`.state`): every change goes through :meth:`Session.changing`
(the lock, the version the pages watch, the log), and the sub-views read it through public
properties and methods only (``tests/view/test_view_layout.py`` checks that none touches a
private one).
"""

from __future__ import annotations

import fnmatch
from typing import Callable

import torch

from ..errors import AcdcError
from ..interventions import Intervention, InterventionStack
from ..models import LoadedModel
from .compare import compare_state
from .hooks import Hook
from .state import CACHED, SessionState
from .steps import Step, step_text
from .summary import Summary

__all__ = ["Session", "Summary", "CACHED"]


class Session(SessionState):
    """A loaded model, a task's :class:`Problem`, an intervention stack and an optional circuit:
    the verbs (open, intervene, undo, hook, the page's JSON) over the state that
    :class:`~acdc_engine.view.state.SessionState` holds and changes.

    Thread-safe: the server calls it from worker threads while a notebook calls it from its
    own; :attr:`version` grows on every change, which is how the page learns of one."""

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
            return [step_text(self._steps, i, self.stack) for i in range(len(self._steps))]

    def tokens(self, ids: list[int] | torch.Tensor) -> list[str]:
        """Readable token strings of ``ids``."""
        tok = self.model.tokenizer
        ids = [int(i) for i in ids]
        if tok is None:
            return [str(i) for i in ids]
        return [tok.decode([i]) for i in ids]

    def hook(self, module, fn: Callable, *, pre: bool = False) -> Hook:
        """Add ``fn`` as a forward hook on ``module`` and re-evaluate: the change shows in every
        open page at once, with no :meth:`notify`.

        ``module``: a dotted path in the Hugging Face model (``"transformer.h.2.mlp"``), the
        nnsight envoy of that module (``s.model.nn.transformer.h[2].mlp``) or the module itself.
        ``fn(module, inputs, output)`` returns a replacement output or None (torch's forward
        hook); with ``pre=True``, ``fn(module, inputs)`` runs before it (torch's pre-hook).
        Only modules the family adapter calls can be hooked (e.g. an MLP, a norm, an
        embedding; a GPT-2 attention block is computed head by head from its weights): a hook
        that never runs is taken off again with an error naming the modules that do.

        The returned :class:`Hook`'s ``remove()`` takes it off (the pages follow too); ``with
        s.hook(...):`` removes it at the end of the block. Hooks stay through ``reset``."""
        return self._hooks.add(module, fn, pre)

    def unhook(self, h: Hook) -> Summary:
        """Take hook ``h`` off and re-evaluate (what ``h.remove()`` does)."""
        return self._hooks.remove(h)

    @property
    def hooks(self) -> list[str]:
        """The modules with a hook added through :meth:`hook`."""
        return self._hooks.names

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
                self._steps.append(Step(" ".join(words), items))
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
                    steps.append(Step(st.text, kept, st.whole and len(kept) == len(st.items)))
                self._steps = [st for st in steps if st.items]
            return self._apply(remove, f"restore {target}")

    def reset(self) -> Summary:
        """Remove every intervention."""
        with self._lock:
            def clear():
                self._steps = []
                self.stack.clear()
            return self._apply(clear, "reset")

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
        with self.changing(None, model=False):
            self.other = other

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
