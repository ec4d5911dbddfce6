"""Iterative pruning (ACDC, Conmy et al. 2023), fast and exact, and an attribution-guided hybrid.

    from acdc_engine.scoring.acdc import AcdcConfig, Guide, acdc
    result = acdc(problem, AcdcConfig(tau=0.01))             # problem.metric prunes (e.g. KL)
    result.keep, result.scores                               # [n_edges] bool, float32
    acdc(problem, AcdcConfig(tau=0.01, guide=Guide(eap_ig_scores)))   # guided ACDC

The algorithm (:mod:`.order` defines it; :func:`acdc_naive` is the slow reference the fast
:func:`acdc` must agree with, decision for decision)::

    M = every edge kept;  m_cur = m(M)                      m: mean metric over the dataset
    for v in nodes, from the logits backwards (reverse topological order):
        if v has no path of kept edges to the logits:  remove every edge into v, untested
        for e in the edges into v (q, k, v inputs of a head; nearest writer first):
            m_new = m(M without e)                           # exact patching
            score[e] = m_new - m_cur
            if damage(m_new, m_cur) < tau:  M = M without e;  m_cur = m_new

Modules, top-down:

    config        AcdcConfig (one run's settings), Guide (guided ACDC), NodeDone (callback)
    result        PruneResult, PruneWarning (tau pruned all or nothing), suggest_tau
    pruning       the default pruning metric (KL, or the task's on a one-entry output) and
                  the check, before any pruning, that it separates full model and empty circuit
    order         the shared definition: visit order, reachability, damage
    reference     acdc_naive: one full patched forward per tested edge (tests, benchmarks)
    checkpoints   fingerprint, save, load (no code runs from a checkpoint file)
    kernel        the per-head attention kernel, checked before it is trusted
    plan          what testing one node re-runs (NodePlan of per-layer steps)
    removals      candidate removal sets as per-slot coefficient matrices (SlotRemovals)
    engine        Engine: candidate removals evaluated exactly, re-running only what changes
    driver        acdc: the decisions (plain and guided) on top of the engine, checkpoints
"""

from .config import AcdcConfig, Guide, NodeDone
from .driver import acdc
from .order import visit_order
from .pruning import check_separates, default_prune_metric
from .reference import acdc_naive
from .result import PruneResult, PruneWarning, suggest_tau

__all__ = ["acdc", "acdc_naive", "AcdcConfig", "Guide", "NodeDone", "PruneResult",
           "PruneWarning", "suggest_tau", "visit_order", "check_separates",
           "default_prune_metric"]
