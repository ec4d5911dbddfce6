"""Broken model directories and unreachable hub models fail in one line that names the file.

Every case here is a row of docs/reliability.md.
"""

from __future__ import annotations

import json
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


# ----- issue 22: weights that do not fill the model, files that are not files ------------------


def test_safetensors_that_is_a_directory(model_copy):
    f = model_copy / "model.safetensors"
    f.unlink()
    f.mkdir()
    assert f"{f} is a directory; expected a weights file" in _message(model_copy)


def test_safetensors_that_is_a_symlink_loop(model_copy):
    f = model_copy / "model.safetensors"
    f.unlink()
    f.symlink_to("loop")
    (model_copy / "loop").symlink_to("model.safetensors")
    msg = _message(model_copy)
    assert f"{f} is a symbolic link that cannot be followed (Too many levels of symbolic " \
           "links); expected a weights file" in msg


def test_config_json_that_is_a_symlink_loop(model_copy):
    cfg = model_copy / "config.json"
    cfg.unlink()
    cfg.symlink_to("config.json")
    msg = _message(model_copy)
    assert f"{cfg} is a symbolic link that cannot be followed" in msg
    assert "has no config.json" not in msg  # (was: "has no config.json (found: config.json")


def test_a_broken_weights_file_is_refused_when_parsed(model_copy, capsys):
    from acdc_engine.cli import build_parser

    f = model_copy / "model.safetensors"
    f.unlink()
    f.mkdir()
    with pytest.raises(SystemExit):
        build_parser().parse_args(["discover", "--model", str(model_copy)])
    err = capsys.readouterr().err
    assert "is a directory; expected a weights file" in err and "Traceback" not in err


def _config(model_copy, **changes):
    cfg = json.loads((model_copy / "config.json").read_text())
    cfg.update(changes)
    (model_copy / "config.json").write_text(json.dumps(cfg))


def test_llama_config_over_gpt2_weights_is_refused(model_copy):
    """Every weight would be random (was: loaded, a circuit reported, exit 0)."""
    _config(model_copy, model_type="llama", architectures=["LlamaForCausalLM"], hidden_size=16,
            num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
            intermediate_size=64, max_position_embeddings=32)
    msg = _message(model_copy)
    assert "its weights do not match its config.json (model_type 'llama', 2 layers)" in msg
    assert "weight(s) the configuration needs are not in the weights file and would be " \
           "random (lm_head.weight, model.embed_tokens.weight" in msg
    assert "weight(s) in the file would be unused (transformer.h.0.attn.c_attn.bias" in msg


def test_more_layers_in_config_than_in_the_weights_is_refused(model_copy):
    n = json.loads((model_copy / "config.json").read_text())["n_layer"]
    _config(model_copy, n_layer=n + 1)
    msg = _message(model_copy)
    assert f"(model_type 'gpt2', {n + 1} layers): " in msg
    assert f"would be random (transformer.h.{n}.attn.c_attn.bias" in msg


def test_fewer_layers_in_config_than_in_the_weights_is_refused(model_copy):
    n = json.loads((model_copy / "config.json").read_text())["n_layer"]
    _config(model_copy, n_layer=n - 1)
    assert f"in the file would be unused (transformer.h.{n - 1}." in _message(model_copy)


def test_the_refusal_is_one_line_from_the_cli(model_copy, capsys):
    from acdc_engine.cli import main

    _config(model_copy, n_layer=3)
    assert main(["discover", "--model", str(model_copy), "--no-track", "--no-render",
                 "--edges", "5", "--method", "eap"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model ") and err.count("\n") == 1
    assert "newly initialized" not in err  # transformers' load report no longer scrolls by


def test_revision_of_a_local_model_is_refused(model_copy):
    with pytest.raises(AcdcError, match=r"revision 'nosuchbranch' does not apply to model .*: "
                                        r"it is a local directory"):
        load_hf_model(str(model_copy), revision="nosuchbranch")


def test_revision_of_a_shipped_model_is_refused_not_recorded(tmp_path, capsys):
    from acdc_engine.cli import main

    out = tmp_path / "run"
    assert main(["discover", "--model", "tiny-ioi", "--revision", "nosuchbranch", "--no-track",
                 "--no-render", "--edges", "5", "--method", "eap", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "error: revision 'nosuchbranch' does not apply to 'tiny-ioi': it is a model " \
           "shipped with acdc-engine" in err
    record = json.loads((out / "run.json").read_text())
    assert record["status"] == "FAILED" and "model_revision" not in record["params"]


def test_a_config_without_sizes_over_small_weights_is_refused_before_building(model_copy):
    """model_type llama with no sizes takes Llama's defaults (a 6.7B model: building it ran
    out of memory before the weights could be compared); refused from the headers alone."""
    cfg = json.loads((model_copy / "config.json").read_text())
    (model_copy / "config.json").write_text(json.dumps(
        {"model_type": "llama", "architectures": ["LlamaForCausalLM"],
         "vocab_size": cfg["vocab_size"]}))
    msg = _message(model_copy)
    assert "(model_type 'llama', 32 layers, hidden size 4096) describes a model of about " \
           "6." in msg
    assert "refused before building it" in msg
