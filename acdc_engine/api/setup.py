"""Setting a run up: a model by name, a task by name or file, the :class:`Problem` they make.

    model = load_model("tiny-ioi")                 # shipped name, local path or hub id
    task = load_task("ioi")                        # registered name, or a pairs file
    problem = build_problem(model, task, metric="logit_diff", ablation="corrupted")

Names go through the plugins: ``acdc_load_model`` (firstresult; the built-in loader runs last
and knows every plugin's shipped models), the registered tasks and ``acdc_task_from_path``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import AcdcError, UnknownNameError, UnsupportedModelError
from ..metrics import Metric
from ..models import LoadedModel
from ..patching import Ablation
from ..plugins import plugin_manager, registry
from ..problem import Problem
from ..tasks import Task, TaskData, prepare

__all__ = ["load_model", "load_task", "task_ref", "load_data", "build_problem"]


def load_model(
    model: str | LoadedModel, *, device=None, dtype=None, revision: str | None = None
) -> LoadedModel:
    """Load a model by shipped name, local path or hub id through the ``acdc_load_model``
    hook (a :class:`LoadedModel` is returned as it is)."""
    if isinstance(model, LoadedModel):
        return model
    loaded = plugin_manager().hook.acdc_load_model(
        model_id=str(model), device=device, dtype=dtype, revision=revision
    )
    if loaded is None:
        raise UnsupportedModelError(f"no plugin could load model {model!r}")
    return loaded


def load_task(task: str | Task) -> Task:
    """A registered task by name, a Task object, or (via plugins) a data file path."""
    if isinstance(task, Task):
        return task
    reg = registry()
    if task in reg.tasks:
        return reg.tasks[task]
    if Path(task).suffix:  # looks like a file: let the plugins read it
        t = plugin_manager().hook.acdc_task_from_path(path=str(task))
        if t is not None:
            return t
        if not Path(task).exists():
            raise AcdcError(f"task file {task!r} does not exist")
    raise UnknownNameError("task", str(task), list(reg.tasks))


def task_ref(task: str | Task, task_obj: Task) -> str:
    """How to name the task again later: a registered name, or the data file's absolute path."""
    if isinstance(task, str) and task not in registry().tasks and Path(task).exists():
        return str(Path(task).resolve())
    return task_obj.name


def load_data(task: Task, model: LoadedModel, n_examples: int | None = None,
              seed: int = 0) -> TaskData:
    """The task's rows (``n_examples``, default the task's), tokenized for ``model``."""
    if n_examples is not None and n_examples < 1:
        raise AcdcError(f"the number of examples must be at least 1, got {n_examples}")
    rows = task.load_rows(n_examples or task.default_n, seed, model.tokenizer)
    return prepare(task, model.tokenizer, rows)


def build_problem(model: LoadedModel, task: Task, *, metric: str | Metric | None = None,
                  ablation: str | None = None, n_examples: int | None = None,
                  batch_size: int = 32, seed: int = 0,
                  positions: str | None = None) -> tuple[Problem, TaskData]:
    """The :class:`Problem` of ``task`` on ``model`` (metric and ablation default to the
    task's), and the tokenized data it was built from. ``positions``: split every edge by
    position ("tokens", "named" or names such as "IO,S2,END"; see acdc_engine.positions)."""
    torch.manual_seed(seed)
    metric_obj = metric if isinstance(metric, Metric) else registry().metric(
        metric or task.default_metric)
    abl = Ablation(ablation or task.default_ablation)
    data = load_data(task, model, n_examples, seed)
    return Problem.build(model, data, metric_obj, abl, batch_size, positions=positions), data
