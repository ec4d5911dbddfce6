"""Data-parallel discovery on torch.distributed: one job, several ranks, the same answer.

    torchrun --nproc-per-node 2 -m acdc_engine.cli discover --task ioi --method acdc ...
    acdc discover --workers 2 ...          # the same, launched on this machine

Design:

* **Who is who** (:mod:`.context`): :class:`Ranks` is read from torchrun's environment
  (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``/``PORT``) by :func:`init_from_env`, which joins
  the process group (gloo on CPUs, NCCL on GPUs) and checks that every rank runs the same
  torch and acdc-engine versions. :data:`SINGLE` is the one-process job: its collectives
  return their argument, so the ordinary path pays nothing and has no branch.
* **Examples sharded**: every rank builds the whole problem (tokens are cheap; a mean
  ablation is fitted on every example), then keeps the contiguous examples ``[lo, hi)`` of its
  rank (:meth:`Problem.shard <acdc_engine.problem.Problem.shard>`; sizes differ by one at
  most; more ranks than examples is refused). Only the expensive part, the forward and
  backward passes, is split.
* **Sums, not means, are reduced**: every scorer adds per-example quantities over its batches
  and divides by the number of examples once. The sum and the count are all-reduced (in
  float64) before the division, so uneven shards give the one-process number:
  EAP/EAP-IG's summed mask gradients, :meth:`Problem.evaluate`'s metric totals (faithfulness,
  the curve, ACDC's full-model metric), every ACDC candidate evaluation's totals
  (:class:`~acdc_engine.scoring.acdc.engine.Engine`), the mask optimizer's gradients
  (:func:`average_gradients`). Every rank then holds the same numbers and takes the same
  ACDC decisions, with no decision sent around.
* **Equal up to summation order**: a sharded score adds the same per-example float32 terms in
  another grouping (each rank's partial sum, then the ranks' sums in float64). The bound is
  docs/numerics.md's rule against a float64 run of one process: ``|ranks32 - ref64| <=
  4 |one32 - ref64| + 16 eps32 max|ref64|`` (``tests/distributed``). ACDC decisions are
  asserted identical.
* **Rank 0 records**: the run directory, the MLflow run and checkpoints are written by rank 0
  alone; a checkpoint is read by rank 0 and broadcast, and its data hash is of every rank's
  examples in one-process order (:attr:`Problem.all_batches`), so a job resumes from it with
  any number of ranks, one included.
* **Launching** (:mod:`.launch`): ``--workers N`` runs torch's own elastic agent
  (``torch.distributed.run``, torchrun's code) on this machine with one thread per rank.
  A rank that fails (an error, a signal such as SIGKILL) ends the job: the agent stops the
  others and :func:`launch` prints one line naming the rank and why.
"""

from .context import SINGLE, Ranks, in_job, init_from_env, shutdown
from .grads import average_gradients

__all__ = ["Ranks", "SINGLE", "init_from_env", "in_job", "shutdown", "average_gradients"]
