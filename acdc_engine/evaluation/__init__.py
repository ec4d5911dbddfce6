"""Selection and evaluation: faithfulness curves (MIB's CPR/CMD), ROC AUC against a ground
truth, and comparing two circuits."""

from .compare import Comparison, compare_circuits
from .curves import BUDGETS, Curve, faithfulness_curve
from .groundtruth import GroundTruth, evaluate_ground_truth, ground_truth_for, load_ground_truth

__all__ = ["BUDGETS", "Curve", "faithfulness_curve", "GroundTruth", "evaluate_ground_truth",
           "ground_truth_for", "load_ground_truth", "Comparison", "compare_circuits"]
