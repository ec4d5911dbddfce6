"""Optional dependencies: a missing one is an error naming the extra that installs it."""

from __future__ import annotations

import sys

import pytest

from acdc_engine.errors import AcdcError
from acdc_engine.extras import require


@pytest.mark.parametrize("module, extra", [("optuna", "search"), ("mlflow", "tracking"),
                                           ("matplotlib", "render")])
def test_missing_optional_dependency_names_its_extra(monkeypatch, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # importing it now raises ImportError
    with pytest.raises(AcdcError, match=rf"pip install 'acdc-engine\[{extra}\]'"):
        require(module, extra, "this feature")


def test_importing_the_package_pulls_in_no_heavy_optional_dependency():
    import subprocess

    code = ("import sys, acdc_engine, acdc_engine.cli; "
            "print(sorted(m for m in ('mlflow', 'optuna', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stderr
