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

from ..errors import AcdcError, TaskDataError, UnknownNameError, UnsupportedModelError
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
        if Path(task).is_file():  # a file, but of a kind no plugin reads
            raise AcdcError(f"task file {task!r}: no plugin reads {Path(task).suffix!r} files "
                            "(a file of clean/corrupted pairs is .jsonl or .csv: docs/pairs.md)")
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
    warned = getattr(model.tokenizer, "deprecation_warnings", None)
    if isinstance(warned, dict):  # check_context names the rows that are too long instead
        warned["sequence-length-is-longer-than-the-specified-maximum"] = True
    try:
        rows = task.load_rows(n_examples or task.default_n, seed, model.tokenizer)
        data = prepare(task, model.tokenizer, rows)
    except AcdcError:
        raise
    except Exception as e:  # e.g. tokenizers' "WordLevel error: Missing [UNK] token"
        raise _untokenizable(task, model, e) from e
    check_context(data, model)
    return data


def _untokenizable(task: Task, model: LoadedModel, e: Exception) -> AcdcError:
    """The error of a task whose prompts the model's tokenizer cannot take (a task built for
    another tokenizer): names both, and the model the task was made for."""
    text = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    made_for = (f"; it was made for model {task.model!r}" if task.model and task.model !=
                model.id else "")
    return AcdcError(
        f"task {task.name!r} cannot be tokenized by the tokenizer of model {model.id!r} "
        f"({type(model.tokenizer).__name__}: {text}){made_for}: use a task written in that "
        "model's vocabulary, or the task's own model")


def context_length(model: LoadedModel) -> int | None:
    """The longest input the model's position embeddings cover (``n_positions``,
    ``max_position_embeddings`` or ``n_ctx`` of its config), or None when it names none."""
    cfg = model.hf.config
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        n = getattr(cfg, key, None)
        if isinstance(n, int) and not isinstance(n, bool) and n > 0:
            return n
    return None


def check_context(data: TaskData, model: LoadedModel) -> None:
    """Refuse rows longer than the model's context (a learned position table has no entry for
    them: an IndexError deep in the forward), naming every such row."""
    n_ctx = context_length(model)
    if n_ctx is None:
        return
    problems = []
    for i, (row, ids) in enumerate(zip(data.rows, data.clean)):
        if len(ids) > n_ctx:
            where = f"line {row['_line']}" if row.get("_line") is not None else f"row {i + 1}"
            problems.append(f"{where}: the prompt is {len(ids)} tokens, longer than model "
                            f"{model.id!r} reads ({n_ctx} tokens, its context length)")
    if problems:
        raise TaskDataError(data.source or f"of task {data.task!r}", problems)


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
