"""The pruning metric: a default that cannot be degenerate, and a check before any pruning.

ACDC prunes by KL divergence to the full model by default. On a model whose output has one
entry (a numerical readout such as tracr's frac_prevs) the softmax over one value is 1 whatever
the circuit, so KL is 0 everywhere and every edge would be pruned: there the default is the
task's own metric (:func:`default_prune_metric`). Whatever the choice, :func:`check_separates`
refuses, before the first test, a pruning metric that gives the full model and the empty
circuit the same value on the problem.
"""

from __future__ import annotations

from ...errors import AcdcError
from ...problem import Problem

__all__ = ["default_prune_metric", "check_separates"]


def default_prune_metric(problem: Problem) -> str:
    """``"kl_div"``, or ``"task"`` (the problem's own metric) when the model's output has one
    entry."""
    return "task" if problem.n_outputs == 1 else "kl_div"


def check_separates(problem: Problem, task_metric: str | None = None) -> tuple[float, float]:
    """``(full, empty)``: the pruning metric (``problem.metric``) of the full model and of the
    empty circuit; raises :class:`AcdcError` when they are equal (every edge would be pruned,
    or none), naming the metric, both values and what to pick instead."""
    full, empty = problem.evaluate([None, problem.empty_mask()])
    if full != empty:
        return full, empty
    name = problem.metric.name
    if problem.n_outputs == 1:
        why = (f"the model's output has one entry, so {name!r} cannot see the circuit" if
               name == "kl_div" else "the model's output has one entry")
        pick = "prune by the task's metric (prune_metric='task', e.g. 'l2' on tracr)"
    else:
        why = "the corrupted prompts may not change the behaviour this metric reads"
        pick = "pick another pruning metric (prune_metric='task' or 'kl_div') or other data"
    other = f" (the task's metric is {task_metric!r})" if task_metric else ""
    raise AcdcError(
        f"pruning metric {name!r} gives the full model and the empty circuit the same value "
        f"({full:.6g} and {empty:.6g}) on this problem: ACDC could not tell any edge from "
        f"another ({why}); {pick}{other}")
