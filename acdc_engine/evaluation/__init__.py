"""Selection and evaluation: faithfulness curves (CPR/CMD), ROC AUC against a ground truth,
comparing two circuits, the selections beyond top-n (ILP, ensembles, bootstrap,
positive-first) and MIB's circuit files and CPR/CMD (docs/metrics.md)."""

from .compare import Comparison, compare_circuits
from .curves import BUDGETS, Curve, faithfulness_curve
from .groundtruth import GroundTruth, evaluate_ground_truth, ground_truth_for, load_ground_truth
from .mib import MIB_PERCENTAGES, MibCurve, mib_curve, read_mib, write_mib
from .selection import SELECTIONS, ensemble_scores, ilp_select, positive_first

__all__ = ["BUDGETS", "Curve", "faithfulness_curve", "GroundTruth", "evaluate_ground_truth",
           "ground_truth_for", "load_ground_truth", "Comparison", "compare_circuits",
           "MIB_PERCENTAGES", "MibCurve", "mib_curve", "read_mib", "write_mib", "SELECTIONS",
           "ensemble_scores", "ilp_select", "positive_first"]
