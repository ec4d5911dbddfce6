"""The notebook's side of a session: inline HTML for Jupyter (a session renders as its summary
and interventions, a served session as a link and an embedded page) and the changes code makes
to the model (:class:`CodeSide`: hooks, edits), which every open page follows at once."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any, Callable

import torch

from ..errors import AcdcError

if TYPE_CHECKING:
    from .session import Session, Summary

__all__ = ["session_html", "bars_svg", "CodeSide", "Hook"]


def bars_svg(values: list[float], width: int = 320, height: int = 48) -> str:
    """A tiny bar chart of per-example values (blue above zero, red below)."""
    if not values:
        return ""
    top = max(max(abs(v) for v in values), 1e-9)
    w = width / len(values)
    mid = height / 2
    bars = []
    for i, v in enumerate(values):
        h = abs(v) / top * (mid - 1)
        y = mid - h if v >= 0 else mid
        colour = "#3b6fb6" if v >= 0 else "#c0392b"
        bars.append(f'<rect x="{i * w:.1f}" y="{y:.1f}" width="{max(w - 1, 1):.1f}" '
                    f'height="{h:.1f}" fill="{colour}"/>')
    return (f'<svg width="{width}" height="{height}" role="img" aria-label="metric per example">'
            f'<line x1="0" x2="{width}" y1="{mid}" y2="{mid}" stroke="#999"/>{"".join(bars)}'
            "</svg>")


def session_html(s: Session) -> str:
    """The session's state as one HTML block."""
    m = s.summary
    rows = [("model", s.model.id), ("task", f"{s.task} ({s.problem.n_examples} examples)"),
            (s.problem.metric.name, f"{m.metric:.4g} ({m.delta:+.4g} last step)"),
            ("answer probability", f"{m.prob:.3f}"),
            ("accuracy", f"{m.accuracy:.3f}"),
            ("flipped vs. clean", ", ".join(map(str, m.flipped[:20])) or "none")]
    if m.logit_diff is not None:
        rows.insert(3, ("logit difference", f"{m.logit_diff:.4g}"))
    info = s.circuit.info()
    if info:
        f = info["faithfulness"]["normalized"] if info["faithfulness"] else None
        rows.append(("circuit", f"{info['source']}: {info['n_edges']} edges"
                     + (f", faithfulness {f:.3f}" if f is not None else "")))
    table = "".join(f"<tr><th style='text-align:left;padding-right:1em'>{escape(k)}</th>"
                    f"<td>{escape(str(v))}</td></tr>" for k, v in rows)
    shown = s.steps + [f"hook on {n} (from code)" for n in s.hooks]
    ivs = "".join(f"<li><code>{escape(t)}</code></li>" for t in shown) or "<li>none</li>"
    return (f"<div class='acdc-session'><b>acdc view session</b> {escape(s.name)}"
            f"<table>{table}</table><div>interventions:<ol>{ivs}</ol></div>"
            f"{bars_svg(m.per_example)}</div>")


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

    def remove(self) -> Summary:
        return self.session._unhook(self)

    def __enter__(self) -> Hook:
        return self

    def __exit__(self, *exc) -> None:
        if self in self.session._hooks:
            self.remove()


class CodeSide:
    """What code does to a :class:`~acdc_engine.view.session.Session`'s model, mixed into it:
    :meth:`hook` and :meth:`changing` re-evaluate and bump the version, so the pages follow."""

    @contextmanager
    def changing(self, message: str = "changed from code"):
        """``with s.changing("scaled W_O of a1.0"): ...``: change the model in the block; the
        session re-evaluates and the pages follow when it ends (even if it fails)."""
        try:
            yield self
        finally:
            self.notify(message)

    # ----- hooks --------------------------------------------------------------------------------
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
        mod, name = self._module(module)
        h = Hook(self, name)

        def call(*args):
            h.fired = True
            return fn(*args)

        with self._lock:
            h.handle = (mod.register_forward_pre_hook(call) if pre
                        else mod.register_forward_hook(call))
            self._hooks.append(h)
            try:
                self.notify(f"hook on {name}")
            except BaseException as e:
                self._unhook(h)
                if isinstance(e, AcdcError):
                    raise
                raise AcdcError(f"the hook on {name} failed: {type(e).__name__}: {e}") from e
            if not h.fired:
                self._unhook(h)
                raise AcdcError(f"the hook on {name} never ran: the {self.model.family} adapter "
                                f"does not call that module; hookable: {self._hookable()}")
        return h

    @property
    def hooks(self) -> list[str]:
        """The modules with a hook added through :meth:`hook`."""
        return [h.name for h in self._hooks]

    def _unhook(self, h: Hook) -> Summary:
        with self._lock:
            if h not in self._hooks:
                raise AcdcError(f"the hook on {h.name} was already removed")
            h.handle.remove()
            self._hooks.remove(h)
            return self.notify(f"hook on {h.name} removed")

    def _module(self, module) -> tuple[torch.nn.Module, str]:
        """(module, dotted path) for a path, an nnsight envoy or a module of the model."""
        hf = self.model.hf
        if isinstance(module, str):
            try:
                return hf.get_submodule(module), module
            except AttributeError:
                raise AcdcError(f"the model has no module {module!r} (e.g. "
                                f"{self._hookable()})") from None
        mod = getattr(module, "_module", module)  # an nnsight envoy wraps the module
        for path, m in hf.named_modules():
            if m is mod:
                return mod, path
        raise AcdcError(f"{type(module).__name__} is not a module of {self.model.id}")

    def _hookable(self, limit: int = 12) -> str:
        """Modules the adapter calls, from one probe run (names, comma-separated)."""
        from ..patching import run

        seen: list[str] = []
        handles = [m.register_forward_hook(lambda *a, n=n: seen.append(n) if n not in seen
                                           else None)
                   for n, m in self.model.hf.named_modules() if n]
        try:
            with torch.no_grad():
                run(self.model.adapter, self.problem.batches[0].clean[:1], last_only=True)
        finally:
            for hd in handles:
                hd.remove()
        more = f", ... ({len(seen)} in all)" if len(seen) > limit else ""
        return ", ".join(seen[:limit]) + more
