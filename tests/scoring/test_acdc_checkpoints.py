"""ACDC checkpoints are data, never code: a crafted checkpoint is refused without running
anything; files of the previous format (numpy arrays) still resume; damaged files say so."""

from __future__ import annotations

import os
import pickle
import warnings

import numpy as np
import pytest
import torch

from acdc_engine.errors import AcdcError
from acdc_engine.plugins import registry
from acdc_engine.problem import Problem
from acdc_engine.scoring.acdc import AcdcConfig, PruneWarning, acdc
from acdc_engine.tasks import prepare
from acdc_engine.testing import random_pairs


class _Payload:
    """Unpickling this calls ``os.system`` (what a hostile checkpoint would do)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.fixture(scope="module")
def problem(gpt2):
    data = prepare("rand", gpt2.tokenizer, random_pairs(6, seed=0))
    return Problem.build(gpt2, data, registry().metric("kl_div"), "corrupted", batch_size=4)


def _run(problem, tau=0.01, **settings):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PruneWarning)
        return acdc(problem, AcdcConfig(tau, progress=False, **settings))


@pytest.mark.parametrize("writer", ["torch.save", "pickle"])
def test_a_malicious_checkpoint_is_refused_without_running_it(problem, tmp_path, writer):
    marker = tmp_path / "pwned"
    ckpt = tmp_path / "acdc.ckpt"
    state = {"version": 2, "fingerprint": _Payload(f"touch {marker}")}
    if writer == "torch.save":
        torch.save(state, ckpt)
    else:  # a plain pickle file, as torch's legacy format reads it
        ckpt.write_bytes(pickle.dumps(state, protocol=2))
    before = ckpt.read_bytes()
    with pytest.raises(AcdcError, match=r"not a (safe|valid) ACDC checkpoint") as err:
        _run(problem, checkpoint=ckpt)
    assert not marker.exists()  # nothing from the file ran
    assert ckpt.read_bytes() == before  # and the run did not overwrite it
    if writer == "torch.save":
        assert "system" in str(err.value) and "refused without running" in str(err.value)


def test_damaged_or_foreign_files_are_not_checkpoints(problem, tmp_path):
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(os.urandom(256))
    with pytest.raises(AcdcError, match="not a valid ACDC checkpoint.*delete it"):
        _run(problem, checkpoint=junk)
    listed = tmp_path / "list.ckpt"
    torch.save([1, 2, 3], listed)
    with pytest.raises(AcdcError, match="not a valid ACDC checkpoint.*list"):
        _run(problem, checkpoint=listed)
    future = tmp_path / "future.ckpt"
    torch.save({"version": 999}, future)
    with pytest.raises(AcdcError, match="has version 999"):
        _run(problem, checkpoint=future)


def test_checkpoints_hold_tensors_and_plain_values_only(problem, tmp_path):
    """The current format loads with torch's weights-only reader and no allow-list."""
    ckpt = tmp_path / "acdc.ckpt"
    _run(problem, checkpoint=ckpt)
    state = torch.load(ckpt, weights_only=True)
    assert state["version"] == 2 and state["keep"].dtype == torch.bool
    assert state["decisions"].shape[1] == 2 and state["damages"].dtype == torch.float64


def test_a_checkpoint_of_the_previous_format_resumes(problem, tmp_path):
    """Version 1 stored numpy arrays (keep, decisions, damages): it still resumes, with the
    same circuit as an uninterrupted run."""
    ref = _run(problem, tau=0.003)
    ckpt = tmp_path / "acdc.ckpt"

    class Stop(Exception):
        pass

    def stop(done):
        if done.position == 4:
            raise Stop

    with pytest.raises(Stop):
        _run(problem, tau=0.003, checkpoint=ckpt, callback=stop)
    new = torch.load(ckpt, weights_only=True)
    old = {**new, "version": 1, "keep": new["keep"].numpy(),
           "decisions": new["decisions"].numpy().astype(np.int64),
           "damages": new["damages"].numpy().astype(np.float64)}
    torch.save(old, ckpt)  # what the previous code wrote
    res = _run(problem, tau=0.003, checkpoint=ckpt)
    assert res.info["resumed_from"] == 4
    assert res.decisions == ref.decisions and torch.equal(res.keep, ref.keep)
