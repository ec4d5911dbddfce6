"""Every hook a plugin can implement. Plugins mark implementations with :data:`hookimpl`.

A plugin is any module or object with ``@hookimpl`` functions named like the specs below. It is
found through the ``acdc_engine`` entry-point group (``[project.entry-points.acdc_engine]`` in
its ``pyproject.toml``) or registered in-process with :func:`acdc_engine.plugins.register`.
Built-in tasks, metrics, methods, model families and shipped models are plugins of exactly this
kind. docs/plugins.md documents each hook (a test keeps it in step with this module).
"""

from __future__ import annotations

import pluggy

PROJECT = "acdc_engine"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

# ----- registration: each returns a list; the core chains them and refuses duplicate names ----


@hookspec
def acdc_tasks():
    """Return a list of :class:`acdc_engine.tasks.Task` this plugin provides.

    Called once per registry build, for every plugin; names must be unique across plugins.
    """


@hookspec
def acdc_metrics():
    """Return a list of :class:`acdc_engine.metrics.Metric` this plugin provides.

    Called once per registry build, for every plugin; names must be unique across plugins.
    """


@hookspec
def acdc_model_families():
    """Return a list of :class:`acdc_engine.models.ModelFamily` this plugin provides.

    Called once per registry build. When a model is loaded, families are tried in registration
    order (plugins registered later first) and the first whose ``matches`` is true runs it.
    """


@hookspec
def acdc_methods():
    """Return a list of :class:`acdc_engine.scoring.Method` this plugin provides.

    Called once per registry build, for every plugin; names must be unique across plugins.
    A method's settings dataclass declares its options and the ranges ``acdc sweep`` searches.
    """


@hookspec
def acdc_shipped_models():
    """Return a list of :class:`acdc_engine.models.ShippedModel` this plugin ships.

    Called once per registry build, for every plugin; names must be unique across plugins.
    The built-in loader resolves these names to their directories and records each model's
    ground-truth file in ``LoadedModel.info["ground_truth"]``.
    """


# ----- resolution: stop at the first non-None result ------------------------------------------


@hookspec(firstresult=True)
def acdc_load_model(model_id, device, dtype, revision):
    """Load the model named ``model_id`` (a name, hub id or local path).

    Return an :class:`acdc_engine.models.LoadedModel`, or None to let the next plugin try.
    Called with keyword arguments; stops at the first non-None result. The built-in loader
    (shipped names, local paths and hub ids, through Hugging Face and nnsight) runs last.
    """


@hookspec(firstresult=True)
def acdc_task_from_path(path):
    """Build a :class:`acdc_engine.tasks.Task` from a data file at ``path`` (a str).

    Return None if this plugin does not read that kind of file. Stops at the first non-None
    result. Used when ``--task`` names a file rather than a registered task.
    """
