"""The Python API: what a notebook and the CLI call.

    discover(model, task, method, **options)     -> DiscoveryResult  (api.discover)
    evaluate_scores(scores, **options)           -> EvaluationResult (api.evaluate)
    cross_faithfulness(circuits, models, task)   -> table             (api.compare)
    sweep(task, model, n_trials, **options)      -> SweepResult       (api.search)
    load_model, load_task, build_problem                              (api.setup)
"""

from .compare import CrossConfig, cross_faithfulness
from .config import DiscoverConfig, RecordConfig
from .discover import discover
from .evaluate import EvaluateConfig, evaluate_scores
from .results import DiscoveryResult, EvaluationResult
from .search import SweepConfig, SweepResult, sweep
from .setup import build_problem, load_model, load_task

__all__ = ["discover", "evaluate_scores", "cross_faithfulness", "load_model", "load_task",
           "build_problem", "DiscoverConfig", "EvaluateConfig", "RecordConfig", "CrossConfig",
           "DiscoveryResult", "EvaluationResult", "sweep", "SweepConfig", "SweepResult"]
