"""The ranks of one job (:class:`Ranks`): who this process is, and the sums it shares.

    ranks = init_from_env()            # torchrun's RANK / WORLD_SIZE / MASTER_ADDR; SINGLE if unset
    lo, hi = ranks.shard(n_examples)   # this rank's examples [lo, hi)
    total = ranks.sum(local_sum)       # float64 all-reduce (SINGLE: the tensor itself)

:data:`SINGLE` is the one-process job: every method returns its argument and no collective
runs, so the non-distributed path costs nothing. A job of several ranks holds a process group
(gloo on CPUs, NCCL when the model is on CUDA); sums travel in float64 so that adding the
ranks' partial sums costs no precision beyond float32's own summation order.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch

from ..errors import AcdcError

__all__ = ["Ranks", "SINGLE", "init_from_env", "in_job", "check_versions", "version_mismatch",
           "shutdown"]

ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
"""The environment torchrun gives every rank (``LOCAL_RANK`` too)."""


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel job: ``rank`` of ``world``, on ``backend``
    (None: one process). Its methods are collectives every rank must call in the same order."""

    rank: int = 0
    world: int = 1
    backend: str | None = None

    @property
    def main(self) -> bool:
        """Rank 0: the one that writes the run directory, the MLflow run and checkpoints."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        """More than one rank: collectives run."""
        return self.world > 1

    def shard(self, n: int) -> tuple[int, int]:
        """This rank's examples ``[lo, hi)`` of ``n``: contiguous, sizes differing by at most
        one, in rank order (so the ranks' shards, concatenated, are the examples in order).
        Refuses more ranks than examples."""
        if n < self.world:
            raise AcdcError(f"{self.world} ranks need at least {self.world} examples, the task "
                            f"has {n}; use fewer workers or more examples")
        q, r = divmod(n, self.world)
        lo = self.rank * q + min(self.rank, r)
        return lo, lo + q + (self.rank < r)

    def device(self) -> torch.device:
        """Where this backend's collectives take tensors (NCCL: this rank's GPU)."""
        if self.backend == "nccl":
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")

    def sum(self, x: torch.Tensor) -> torch.Tensor:
        """The sum over ranks of ``x`` (every rank gets it), added in float64 and returned in
        ``x``'s dtype and device; ``x`` itself is unchanged. One process: ``x``."""
        if not self.active:
            return x
        import torch.distributed as dist

        buf = x.detach().to(self.device(), torch.float64).contiguous()
        self._collective(dist.all_reduce, buf)
        return buf.to(x.device, x.dtype)

    def _collective(self, fn, *args, **kw):
        """``fn(*args, **kw)``; a peer that left the job (killed, failed) is an AcdcError in
        one line naming this rank (the launcher names the rank that left)."""
        try:
            return fn(*args, **kw)
        except RuntimeError as e:
            text = str(e).strip()
            first = text.splitlines()[0] if text else type(e).__name__
            if "]" in first:  # "[.../pair.cc:537] Read error ...": the part after the source
                first = first.split("]", 1)[1].strip()
            raise AcdcError(f"rank {self.rank} of {self.world}: another rank left the job "
                            f"during a collective ({first[:160]})") from None

    def sum_floats(self, values: list[float]) -> list[float]:
        """The sums over ranks of Python floats (one collective for the whole list)."""
        if not self.active:
            return list(values)
        return self.sum(torch.tensor(values, dtype=torch.float64)).tolist()

    def gather(self, obj) -> list:
        """Every rank's ``obj`` (picklable), in rank order, on every rank."""
        if not self.active:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world
        self._collective(dist.all_gather_object, out, obj)
        return out

    def broadcast(self, obj):
        """Rank 0's ``obj`` (picklable) on every rank (what only rank 0 can read, e.g. a
        checkpoint, reaches the others this way)."""
        if not self.active:
            return obj
        import torch.distributed as dist

        box = [obj if self.main else None]
        self._collective(dist.broadcast_object_list, box, src=0)
        return box[0]

    def barrier(self) -> None:
        """Wait for every rank."""
        if self.active:
            import torch.distributed as dist

            self._collective(dist.barrier)


SINGLE = Ranks()
"""The one-process job: no collective, no shard."""


def in_job(env: dict | None = None) -> bool:
    """Whether ``env`` (default ``os.environ``) is a rank of a torchrun job of several ranks."""
    env = os.environ if env is None else env
    try:
        return int(env.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def init_from_env(backend: str | None = None, timeout_s: float = 120.0) -> Ranks:
    """The :class:`Ranks` of this process: :data:`SINGLE` outside a job of several ranks,
    else the process group joined from torchrun's environment (``backend``: gloo, or NCCL
    when CUDA is there and ``backend`` is None). Checks that every rank runs the same torch
    and acdc-engine versions. Errors name this rank in one line: a store it cannot reach
    within ``timeout_s``, a version that differs from rank 0's."""
    if not in_job():
        return SINGLE
    import torch.distributed as dist

    env = os.environ
    missing = [k for k in ENV if k not in env]
    rank, world = int(env.get("RANK", "-1")), int(env["WORLD_SIZE"])
    if missing:
        raise AcdcError(f"rank {rank} of {world}: torchrun's {', '.join(missing)} missing from "
                        "the environment; start the job with torchrun or acdc --workers")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        local, n_gpus = int(env.get("LOCAL_RANK", "0")), torch.cuda.device_count()
        if local >= n_gpus:
            raise AcdcError(f"rank {rank} of {world} has no GPU of its own (local rank {local}, "
                            f"{n_gpus} GPU(s) visible): start as many ranks per machine as "
                            "GPUs, or run on CPUs (--device cpu: gloo)")
        torch.cuda.set_device(local)
    where = f"{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise AcdcError(f"rank {rank} of {world} cannot join the job through the store at "
                            f"{where} ({first}); every rank must reach MASTER_ADDR:MASTER_PORT"
                            ) from None
    ranks = Ranks(dist.get_rank(), dist.get_world_size(), backend)
    check_versions(ranks)
    return ranks


def check_versions(ranks: Ranks) -> None:
    """Refuse a job whose ranks run different torch or acdc-engine versions (they could
    compute different numbers), naming the first rank that differs from rank 0."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("acdc-engine")
    except PackageNotFoundError:
        ours = "unknown"
    why = version_mismatch(ranks.gather((torch.__version__, ours)))
    if why is not None:
        raise AcdcError(why)


def version_mismatch(every: list[tuple[str, str]]) -> str | None:
    """Why the ranks' ``(torch, acdc-engine)`` versions (rank order) cannot run one job, naming
    the first rank that differs from rank 0; None when they agree."""
    for r, theirs in enumerate(every):
        if tuple(theirs) != tuple(every[0]):
            return (f"rank {r} runs torch {theirs[0]} / acdc-engine {theirs[1]}, rank 0 torch "
                    f"{every[0][0]} / acdc-engine {every[0][1]}; every rank must run the same "
                    "versions")
    return None


def shutdown(ranks: Ranks) -> None:
    """Leave the process group (no-op for :data:`SINGLE`)."""
    if ranks.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
