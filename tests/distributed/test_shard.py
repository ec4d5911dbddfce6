"""Sharding and the one-process job, without starting any process: every example goes to
exactly one rank, in order; more ranks than examples and zero workers are refused in one
line; SINGLE changes nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from acdc_engine.distributed import SINGLE, Ranks, average_gradients
from acdc_engine.distributed.launch import launch, why
from acdc_engine.errors import AcdcError

sys.path.insert(0, str(Path(__file__).parent))
import job  # noqa: E402


@pytest.mark.parametrize("n,world", [(15, 2), (15, 4), (7, 7), (100, 3)])
def test_shards_cover_the_examples_in_order_and_differ_by_one_at_most(n, world):
    parts = [Ranks(r, world, "gloo").shard(n) for r in range(world)]
    assert parts[0][0] == 0 and parts[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    sizes = [hi - lo for lo, hi in parts]
    assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1


def test_more_ranks_than_examples_is_refused_in_one_line():
    with pytest.raises(AcdcError, match="4 ranks need at least 4 examples, the task has 3") as e:
        Ranks(1, 4, "gloo").shard(3)
    assert "\n" not in str(e.value)


def test_zero_workers_is_refused():
    with pytest.raises(AcdcError, match="--workers must be at least 1"):
        launch(["acdc_engine.cli", "discover"], 0)


def test_problem_shards_cut_batches_and_keep_the_order(gpt2):
    whole = job.problem_for(gpt2)  # batches of 4, 4, 2 (length 6) and 4, 1 (length 7)
    rows = [r for b in whole.batches for r in b.rows]
    got = []
    for r in range(3):
        part = whole.shard(Ranks(r, 3, "gloo"))
        assert part.n_examples == 5 and part.ranks.rank == r
        assert part.all_batches is whole.batches  # what the checkpoint fingerprint hashes
        got += [i for b in part.batches for i in b.rows]
        for b in part.batches:  # each piece's tokens are the whole problem's rows
            src = next(w for w in whole.batches if b.rows[0] in w.rows)
            idx = [src.rows.index(i) for i in b.rows]
            assert torch.equal(b.clean, src.clean[idx])
    assert got == rows


def test_the_one_process_job_changes_nothing(gpt2):
    p = job.problem_for(gpt2)
    assert p.shard(SINGLE) is p and p.all_batches is p.batches
    x = torch.randn(5)
    assert SINGLE.sum(x) is x and SINGLE.sum_floats([1.5]) == [1.5]
    assert SINGLE.gather(3) == [3] and SINGLE.broadcast(4) == 4
    w = torch.nn.Parameter(torch.ones(3))
    w.grad = torch.full((3,), 2.0)
    average_gradients([w], SINGLE, weight=5)
    assert torch.equal(w.grad, torch.full((3,), 2.0))


def test_a_killed_rank_is_named_with_its_signal(tmp_path):
    from torch.distributed.elastic.multiprocessing.errors import ProcessFailure

    f = ProcessFailure(local_rank=1, pid=123, exitcode=-9, error_file=str(tmp_path / "none"))
    assert why(f) == "killed by SIGKILL (pid 123)"


def test_a_rank_on_another_torch_version_is_named():
    from acdc_engine.distributed.context import version_mismatch

    assert version_mismatch([("2.13.0", "0.1.0")] * 3) is None
    why = version_mismatch([("2.13.0", "0.1.0"), ("2.13.0", "0.1.0"), ("2.12.1", "0.1.0")])
    assert why.startswith("rank 2 runs torch 2.12.1 / acdc-engine 0.1.0, rank 0 torch 2.13.0")


def test_a_store_this_rank_cannot_reach_is_one_line_naming_it(monkeypatch):
    import socket

    from acdc_engine.distributed import init_from_env

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in {"RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2",
                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(AcdcError, match=rf"rank 1 of 2 cannot join the job through the store "
                                        rf"at 127.0.0.1:{port}") as e:
        init_from_env("gloo", timeout_s=2)
    assert "\n" not in str(e.value)
