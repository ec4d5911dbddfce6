"""A data-parallel job the tests run as ranks: EAP, EAP-IG, ACDC and a curve on a tiny model.

    python tests/distributed/job.py MODEL_DIR OUT_FILE WORKERS

Outside a job it launches itself as WORKERS ranks (acdc_engine.distributed.launch); as a rank
it builds the problem of :func:`problem_for` (the test builds the same one in one process),
shards it, computes, and rank 0 saves the results to OUT_FILE.
"""

from __future__ import annotations

import sys
import warnings

import torch


def problem_for(model, n: int = 15, batch_size: int = 4, metric: str = "logit_diff",
                mixed: bool = True):
    """Uneven batches (length-6 rows, then length-7 rows unless not ``mixed``) so that shards
    cut batches."""
    from acdc_engine.plugins import registry
    from acdc_engine.problem import Problem
    from acdc_engine.tasks import prepare
    from acdc_engine.testing import random_pairs

    rows = random_pairs(n - 5 * mixed, seed=0) + random_pairs(5 * mixed, length=7, seed=3)
    data = prepare("rand", model.tokenizer, rows)
    return Problem.build(model, data, registry().metric(metric), "corrupted", batch_size)


def compute(problem, problem64) -> dict:
    """Everything the tests compare: attribution scores (float32), ACDC (float64 model, so
    that no decision is a rounding tie), the faithfulness curve."""
    from acdc_engine.evaluation.curves import faithfulness_curve
    from acdc_engine.scoring.acdc import AcdcConfig, PruneWarning, acdc
    from acdc_engine.scoring.attribution import attribute

    out = {"eap": attribute(problem, "eap", progress=False),
           "eap-ig": attribute(problem, "eap-ig", ig_steps=3, progress=False)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruneWarning)
        kl = problem64.with_metric(_metric("kl_div"))
        res = acdc(kl, AcdcConfig(0.002, progress=False))
    out["acdc_keep"], out["acdc_scores"] = res.keep, res.scores
    out["acdc_decisions"] = res.decisions
    curve, _, _ = faithfulness_curve(problem, out["eap"], (1, 10, 50, 100), progress=False)
    out["curve"] = list(curve.values) + [curve.full, curve.empty]
    return out


def mask_opt(problem):
    """UGS's learned scores after a few steps on ``problem`` (one batch of every example:
    each rank's step covers its shard, and the averaged gradient is the whole batch's)."""
    from acdc_engine.scoring.mask_opt import MaskOptConfig, optimize_mask

    cfg = MaskOptConfig(kind="ugs", target_sparsity=None, steps=4, lr=0.05, progress=False)
    return optimize_mask(problem, cfg).scores


def _metric(name):
    from acdc_engine.plugins import registry

    return registry().metric(name)


def main(model_dir: str, out_file: str, workers: int) -> int:
    from acdc_engine import load_model
    from acdc_engine.distributed import in_job, init_from_env, shutdown
    from acdc_engine.distributed.launch import launch

    if not in_job():
        return launch([__file__, model_dir, out_file, str(workers)], workers, module=False)
    torch.set_num_threads(1)
    ranks = init_from_env()
    try:
        model = load_model(model_dir, device="cpu")
        model64 = load_model(model_dir, device="cpu", dtype=torch.float64)
        out = compute(problem_for(model).shard(ranks), problem_for(model64).shard(ranks))
        out["n_local"] = problem_for(model).shard(ranks).n_examples
        out["mask_opt"] = mask_opt(problem_for(model, 8, 8, mixed=False).shard(ranks))
        every = ranks.gather(out)
        if ranks.main:
            torch.save(every, out_file)
    finally:
        shutdown(ranks)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
