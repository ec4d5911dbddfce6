"""Discovery methods as small named objects with typed settings and a search space.

A :class:`Method` maps a :class:`~acdc_engine.problem.Problem` and its settings to a
:class:`MethodOutput`: a score per edge (higher ``|score|`` = more important) and, for methods
that choose the circuit themselves (iterative pruning), the kept edges::

    @dataclass(frozen=True)
    class IGSettings:
        ig_steps: int = setting(5, "interpolation steps", search=(1, 10))

    Method("eap-ig", run_eap_ig, settings=IGSettings, description="...")

``settings`` is a frozen dataclass: its fields are the method's options with their defaults
and types (values given as strings, e.g. ``--set tau=0.02`` on the CLI, are converted and
checked: :meth:`Method.configure`). A field whose metadata has ``search`` takes part in
``acdc sweep``: ``(low, high)`` for numbers (``log=True`` for a log scale) or a list of choices
(:meth:`Method.suggest`). Methods come from plugins (``acdc_methods`` hook), built-ins included.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..errors import AcdcError

__all__ = ["Method", "MethodOutput", "NoSettings", "setting"]


@dataclass
class MethodOutput:
    """What a method returns: a score per edge (``graph.edges`` order; higher ``|score|`` = more
    important), optionally the circuit it chose (``keep``), and numbers worth logging (``info``)."""
    scores: torch.Tensor  # [n_edges] float32, graph.edges order
    keep: torch.Tensor | None = None  # [n_edges] bool, when the method picks the circuit
    info: dict = field(default_factory=dict)  # extra numbers worth logging


@dataclass(frozen=True)
class NoSettings:
    """A method without options."""


def setting(default, help: str = "", *, search=None, log: bool = False):
    """A settings field: its default, a one-line help, and (optionally) its search space:
    ``(low, high)`` for a number (``log`` for a log scale) or a list of choices."""
    return field(default=default, metadata={"help": help, "search": search, "log": log})


def _convert(name: str, kind, value):
    """``value`` as the field type ``kind`` (str, int, float, bool, or one of them | None)."""
    args = typing.get_args(kind)
    if args:  # Optional[...] / X | None
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
            if type(None) in args:
                return None
        kind = next(a for a in args if a is not type(None))
    if kind is bool:
        if isinstance(value, str):
            v = value.strip().lower()
            if v in ("1", "true", "yes", "on"):
                return True
            if v in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"expected true or false, got {value!r}")
        return bool(value)
    if kind is int:
        if isinstance(value, float) and not value.is_integer():
            raise ValueError(f"expected an integer, got {value!r}")
        return int(value)
    if kind is float:
        out = float(value)
        if not math.isfinite(out):
            raise ValueError(f"expected a finite number, got {value!r}")
        return out
    if kind is str:
        return "" if value is None else str(value)
    return value


@dataclass(frozen=True)
class Method:
    """A named discovery method: ``run(problem, settings, progress) -> MethodOutput``."""

    name: str
    run: Callable[[Any, Any, bool], MethodOutput]
    settings: type = NoSettings
    selects_circuit: bool = False
    description: str = ""

    def __post_init__(self):
        if not (isinstance(self.settings, type) and dataclasses.is_dataclass(self.settings)):
            raise TypeError(f"method {self.name!r}: settings must be a dataclass type, got "
                            f"{self.settings!r}")

    @property
    def defaults(self) -> dict:
        """Setting name -> default value."""
        return dataclasses.asdict(self.settings())

    def fields(self) -> list[dataclasses.Field]:
        return list(dataclasses.fields(self.settings))

    def configure(self, values: dict | None = None):
        """The settings object for ``values`` (name -> value or string) over the defaults;
        an unknown name or a value of the wrong type is an error naming both."""
        if isinstance(values, self.settings):
            return values
        values = dict(values or {})
        known = {f.name: f for f in self.fields()}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise AcdcError(f"method {self.name!r} has no setting(s) {unknown} "
                            f"(its settings: {sorted(known) or 'none'})")
        hints = typing.get_type_hints(self.settings)
        out = {}
        for k, v in values.items():
            try:
                out[k] = _convert(k, hints.get(k, Any), v)
            except (TypeError, ValueError) as e:
                raise AcdcError(f"method {self.name!r}: setting {k}={v!r} is not valid "
                                f"({e})") from None
        try:
            return self.settings(**out)
        except (TypeError, ValueError) as e:
            raise AcdcError(f"method {self.name!r}: {e}") from None

    def search_space(self) -> dict[str, dict]:
        """Setting name -> ``{"range": (low, high), "log": bool}`` or ``{"choices": [...]}``
        for every searchable setting."""
        hints = typing.get_type_hints(self.settings)
        out = {}
        for f in self.fields():
            spec = f.metadata.get("search")
            if spec is None:
                continue
            if isinstance(spec, (list, set)) or (isinstance(spec, tuple) and len(spec) != 2):
                out[f.name] = {"choices": list(spec)}
            else:
                out[f.name] = {"range": tuple(spec), "log": bool(f.metadata.get("log")),
                               "type": hints.get(f.name)}
        return out

    def suggest(self, trial, overrides: dict | None = None) -> dict:
        """One optuna trial's settings: every searchable setting suggested from its space
        (``overrides`` replaces a setting's range, e.g. ``{"tau": (1e-4, 1e-1)}``)."""
        overrides = overrides or {}
        out = {}
        for name, spec in self.search_space().items():
            if "choices" in spec:
                out[name] = trial.suggest_categorical(name, spec["choices"])
                continue
            lo, hi = overrides.get(name, spec["range"])
            if spec["type"] is int:
                out[name] = trial.suggest_int(name, int(lo), int(hi), log=spec["log"])
            else:
                out[name] = trial.suggest_float(name, float(lo), float(hi), log=spec["log"])
        return out
