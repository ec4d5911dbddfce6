"""Broken model directories and unreachable hub models fail in one line that names the file.

Every case here is a row of docs/reliability.md.
"""

from __future__ import annotations

import os
import shutil
import time

import pytest
import torch

from acdc_engine.errors import AcdcError
from acdc_engine.loading import check_model_dir, hub_options, load_hf_model


@pytest.fixture
def model_copy(gpt2_path, tmp_path):
    """A writable copy of the tiny GPT-2 directory (config.json, model.safetensors, tokenizer)."""
    return shutil.copytree(gpt2_path, tmp_path / "model")


def _message(path) -> str:
    with pytest.raises(AcdcError) as info:
        load_hf_model(str(path))
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_the_copy_is_a_good_model(model_copy):
    check_model_dir(model_copy)  # no error: the checks accept what save_pretrained writes


def test_truncated_safetensors(model_copy):
    f = model_copy / "model.safetensors"
    size = f.stat().st_size
    f.write_bytes(f.read_bytes()[: size // 2])
    msg = _message(model_copy)
    assert f"{f} is truncated: {size // 2} bytes, its header describes {size}" in msg


def test_safetensors_cut_inside_its_header(model_copy):
    f = model_copy / "model.safetensors"
    f.write_bytes(f.read_bytes()[:20])
    assert "truncated in its header (20 bytes" in _message(model_copy)


def test_random_bytes_safetensors(model_copy):
    f = model_copy / "model.safetensors"
    f.write_bytes(os.urandom(4096))
    msg = _message(model_copy)
    assert str(f) in msg and "not a valid safetensors file" in msg
    assert "random or foreign data" in msg


def test_empty_safetensors(model_copy):
    (model_copy / "model.safetensors").write_bytes(b"")
    assert "only 0 bytes (truncated or empty)" in _message(model_copy)


class _Evil:
    """Unpickling this would create a file: what a hostile pytorch_model.bin could do."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return open, (self.target, "w")


def test_pickled_bin_that_runs_code_is_refused_and_runs_nothing(model_copy, tmp_path):
    (model_copy / "model.safetensors").unlink()
    witness = tmp_path / "pwned"
    f = model_copy / "pytorch_model.bin"
    torch.save({"w": _Evil(witness)}, f)
    msg = _message(model_copy)
    assert f"{f} cannot be loaded safely: it asks to run code" in msg
    assert not witness.exists()


def test_a_plain_tensor_bin_passes_the_check(model_copy):
    (model_copy / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(2)}, model_copy / "pytorch_model.bin")
    check_model_dir(model_copy)


def test_missing_config_json(model_copy):
    (model_copy / "config.json").unlink()
    msg = _message(model_copy)
    assert f"model directory {str(model_copy)!r} has no config.json" in msg
    assert "model_type" not in msg


def test_config_json_that_is_not_json(model_copy):
    (model_copy / "config.json").write_text("{not json")
    assert f"{model_copy / 'config.json'} is not a readable JSON file" in _message(model_copy)


def test_no_weights(model_copy):
    (model_copy / "model.safetensors").unlink()
    assert "has no weights (model.safetensors or pytorch_model.bin)" in _message(model_copy)


def test_empty_directory(tmp_path):
    assert f"model directory {str(tmp_path)!r} is empty" in _message(tmp_path)


def test_a_file_instead_of_a_directory(model_copy):
    assert "is a file; expected a model directory" in _message(model_copy / "config.json")


def test_hub_model_absent_offline_fails_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.perf_counter()
    with pytest.raises(AcdcError, match=r"not in the Hugging Face cache, and HF_HUB_OFFLINE is "
                                        r"set"):
        load_hf_model("someorg/no-such-model")
    assert time.perf_counter() - t0 < 2


def test_hub_unreachable_fails_in_seconds(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on port 9
    t0 = time.perf_counter()
    with pytest.raises(AcdcError, match=r"http://127.0.0.1:9 cannot be reached"):
        hub_options("someorg/no-such-model")
    assert time.perf_counter() - t0 < 5
