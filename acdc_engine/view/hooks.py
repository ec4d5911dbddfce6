"""Hooks code adds to a session's model (:meth:`Session.hook
<acdc_engine.view.session.Session.hook>`): every open page follows at once.

:class:`CodeHooks` (one per session) keeps the hooks and goes through the session's public
interface only: :meth:`~acdc_engine.view.session.Session.notify` after each change (the model
changed: re-evaluate, bump the version, log) and ``session.lock`` to add a hook, evaluate and
check that it ran as one step that no other thread sees half done.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import torch

from ..errors import AcdcError

if TYPE_CHECKING:
    from .session import Session, Summary

__all__ = ["Hook", "CodeHooks"]


@dataclass(eq=False)
class Hook:
    """A hook on one of the model's modules, added by :meth:`Session.hook`.

    ``remove()`` takes it off and re-evaluates (the pages follow at once); used as a context
    manager (``with s.hook(...):``) it is removed when the block ends."""

    session: Session
    name: str
    """The module's dotted path in the Hugging Face model (``transformer.h.2.mlp``)."""
    handle: Any = field(default=None, repr=False)
    fired: bool = False
    """Whether the hook has run (a module the adapter never calls would not)."""
    attached: bool = False
    """Whether the hook is on the model now."""

    def remove(self) -> Summary:
        return self.session.unhook(self)

    def __enter__(self) -> Hook:
        return self

    def __exit__(self, *exc) -> None:
        if self.attached:
            self.remove()


class CodeHooks:
    """The hooks added to a session's model from code, in the order added."""

    def __init__(self, session: Session):
        self.session = session
        self.live: list[Hook] = []

    @property
    def names(self) -> list[str]:
        return [h.name for h in self.live]

    def add(self, module, fn: Callable, pre: bool = False) -> Hook:
        """See :meth:`Session.hook <acdc_engine.view.session.Session.hook>`."""
        s = self.session
        mod, name = self.module(module)
        h = Hook(s, name)

        def call(*args):
            h.fired = True
            return fn(*args)

        with s.lock:
            h.handle = (mod.register_forward_pre_hook(call) if pre
                        else mod.register_forward_hook(call))
            self.live.append(h)
            h.attached = True
            try:
                s.notify(f"hook on {name}")
            except BaseException as e:
                self.remove(h)
                if isinstance(e, AcdcError):
                    raise
                raise AcdcError(f"the hook on {name} failed: {type(e).__name__}: {e}") from e
            if not h.fired:
                self.remove(h)
                raise AcdcError(f"the hook on {name} never ran: the {s.model.family} adapter "
                                f"does not call that module; hookable: {self.hookable()}")
        return h

    def remove(self, h: Hook) -> Summary:
        """Take ``h`` off the model and re-evaluate."""
        s = self.session
        with s.lock:
            if h not in self.live:
                raise AcdcError(f"the hook on {h.name} was already removed")
            h.handle.remove()
            self.live.remove(h)
            h.attached = False
            return s.notify(f"hook on {h.name} removed")

    def module(self, module) -> tuple[torch.nn.Module, str]:
        """(module, dotted path) for a path, an nnsight envoy or a module of the model."""
        s = self.session
        hf = s.model.hf
        if isinstance(module, str):
            try:
                return hf.get_submodule(module), module
            except AttributeError:
                raise AcdcError(f"the model has no module {module!r} (e.g. "
                                f"{self.hookable()})") from None
        mod = getattr(module, "_module", module)  # an nnsight envoy wraps the module
        for path, m in hf.named_modules():
            if m is mod:
                return mod, path
        raise AcdcError(f"{type(module).__name__} is not a module of {s.model.id}")

    def hookable(self, limit: int = 12) -> str:
        """Modules the adapter calls, from one probe run (names, comma-separated)."""
        from ..patching import LAST, NO_PATCH, run

        s = self.session
        seen: list[str] = []
        handles = [m.register_forward_hook(lambda *a, n=n: seen.append(n) if n not in seen
                                           else None)
                   for n, m in s.model.hf.named_modules() if n]
        try:
            with torch.no_grad():
                run(s.model.adapter, s.problem.batches[0].clean[:1], NO_PATCH, LAST)
        finally:
            for hd in handles:
                hd.remove()
        more = f", ... ({len(seen)} in all)" if len(seen) > limit else ""
        return ", ".join(seen[:limit]) + more
