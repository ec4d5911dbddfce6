"""The tutorial notebooks (docs/notebooks/*.ipynb): committed without outputs, in step with the
script that writes them, and executed top to bottom in a Jupyter kernel of this interpreter.

Each notebook checks its own answers in ``assert`` cells, so a wrong number fails here as an
exception does. Notebooks that take more than ~40 s on a laptop CPU are marked ``slow``.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK_DIR = ROOT / "docs" / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SLOW: set[str] = set()  # notebooks over ~40 s: run with -m slow
CELL_TIMEOUT_S = 600


def _generator():
    spec = importlib.util.spec_from_file_location("notebook_generator",
                                                  NOTEBOOK_DIR / "generate.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("notebook_generator", module)   # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _params():
    return [pytest.param(p, id=p.stem, marks=[pytest.mark.slow] if p.name in SLOW else [])
            for p in NOTEBOOKS]


def test_every_generated_notebook_is_committed_and_no_other():
    assert {p.name for p in NOTEBOOKS} == set(_generator().NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs(path):
    """Outputs and execution counts stay out of git (``nbstripout`` removes them)."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = [f"cell {i}: {'outputs' if cell.get('outputs') else 'execution_count'}"
             for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
             and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert not dirty, (f"{path.name} carries outputs ({', '.join(dirty)}); strip them: "
                       f"nbstripout {path.relative_to(ROOT)}")
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_in_step_with_its_generator(path):
    text = _generator().render(_generator().NOTEBOOKS[path.name])
    assert json.loads(path.read_text()) == json.loads(text), (
        f"{path.name} differs from docs/notebooks/generate.py: edit the script and run "
        "python docs/notebooks/generate.py")


@pytest.fixture
def kernel_env(tmp_path, monkeypatch):
    """A ``python3`` kernel that runs this interpreter (the venv's), whatever kernels the user
    has installed, with Jupyter's and IPython's files in a temporary folder."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (acdc-engine tests)", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))   # searched first
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")   # as the test process: 2 shared cores
    work = tmp_path / "work"
    work.mkdir()
    return work


@pytest.mark.parametrize("path", _params())
def test_notebook_runs(path, kernel_env):
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, kernel_name="python3", timeout=CELL_TIMEOUT_S,
                            resources={"metadata": {"path": str(kernel_env)}})
    try:
        client.execute()
    except CellExecutionError as e:
        pytest.fail(f"{path.name} failed:\n{e}", pytrace=False)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o.output_type == "error"]
    assert not errors, errors
