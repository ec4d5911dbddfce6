"""Methods declare typed settings: values are converted and checked, search spaces read."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from acdc_engine.errors import AcdcError
from acdc_engine.plugins import registry
from acdc_engine.scoring import Method, MethodOutput, setting


@dataclass(frozen=True)
class MySettings:
    alpha: float = setting(0.5, "a weight", search=(0.1, 1.0), log=True)
    steps: int = setting(3, "steps", search=(1, 4))
    mode: str = setting("a", "a choice", search=["a", "b"])
    cap: float | None = setting(None, "optional cap")
    flag: bool = setting(False, "a switch")


M = Method("mine", lambda problem, s, progress: MethodOutput(None), settings=MySettings)


def test_configure_converts_strings_and_keeps_defaults():
    s = M.configure({"alpha": "0.25", "steps": "2", "cap": "none", "flag": "yes"})
    assert (s.alpha, s.steps, s.mode, s.cap, s.flag) == (0.25, 2, "a", None, True)
    assert M.defaults == {"alpha": 0.5, "steps": 3, "mode": "a", "cap": None, "flag": False}


@pytest.mark.parametrize("values, match", [
    ({"tau": 1}, "has no setting"), ({"alpha": "abc"}, "alpha='abc' is not valid"),
    ({"steps": 1.5}, "steps=1.5 is not valid"), ({"alpha": "nan"}, "finite"),
    ({"flag": "maybe"}, "true or false"),
])
def test_bad_settings_are_clear_errors(values, match):
    with pytest.raises(AcdcError, match=match):
        M.configure(values)


def test_builtin_methods_declare_their_spaces():
    reg = registry()
    assert reg.method("eap-ig").search_space()["ig_steps"]["range"] == (1, 10)
    assert reg.method("acdc").search_space()["tau"]["log"] is True
    assert reg.method("eap").search_space() == {}
    with pytest.raises(AcdcError, match="tau"):
        reg.method("acdc").configure({"tau": "abc"})


def test_suggest_uses_the_declared_space():
    optuna = pytest.importorskip("optuna")
    study = optuna.create_study()
    trial = study.ask()
    got = M.suggest(trial, overrides={"alpha": (0.2, 0.3)})
    assert 0.2 <= got["alpha"] <= 0.3 and 1 <= got["steps"] <= 4 and got["mode"] in "ab"
    assert "cap" not in got and "flag" not in got
