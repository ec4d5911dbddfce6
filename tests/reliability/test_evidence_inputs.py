"""The evidence commands (probe, sae, neurons) refuse nonsense with one line, exit 2, no
traceback: when the command line is parsed where the value alone is wrong, else when the
command starts (the model's layers, prompt length, MLP width, the SAE file). Rows of
docs/reliability.md (Evidence tools, second round)."""

from __future__ import annotations

import pytest
import torch

from acdc_engine.cli import build_parser, main

PARSE_ERRORS = [  # (command line, what the user is told)
    ("probe --train 1", "argument --train: must be in (0, 1) (the rest is held out to test "
                        "on), got 1"),
    ("probe --train 0", "argument --train: must be in (0, 1)"),
    ("sae train --l1 -1", "argument --l1: must be >= 0, got -1"),
    ("sae train --l1 nan", "argument --l1: expected a finite number, got 'nan'"),
    ("sae train --layer -2", "argument --layer: must be >= -1 (-1: the embeddings), got -2"),
    ("neurons --groups 5:2", "argument --groups: group '5:2' selects no neurons: a slice "
                             "START:STOP takes START up to, not including, STOP"),
    ("neurons --groups top:0", "argument --groups: group 'top:0' selects no neurons"),
]


@pytest.mark.parametrize("line, message", PARSE_ERRORS, ids=[c for c, _ in PARSE_ERRORS])
def test_nonsense_is_refused_when_parsed(line, message, refused_when_parsed):
    refused_when_parsed(line, message)


def test_an_empty_group_is_refused_when_parsed(capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["neurons", "--groups", "0:4", ""])
    assert e.value.code == 2
    assert "argument --groups: group '' is empty" in capsys.readouterr().err


def _one_error_line(argv, capsys) -> str:
    rc = main(argv)
    out = capsys.readouterr()
    assert rc == 2, out
    assert "Traceback" not in out.err + out.out
    lines = [ln for ln in out.err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, out.err
    return lines[0]


SMALL = ["--examples", "8", "--threads", "1"]


def test_probe_position_outside_the_prompts(capsys):
    err = _one_error_line(["probe", "--position", "999", *SMALL], capsys)
    assert "position 999 is outside the prompts: the shortest is" in err
    assert "positions run from 0 to" in err and "from the end" in err


def test_probe_split_that_leaves_too_few_to_test(capsys):
    err = _one_error_line(["probe", "--train", "0.95", *SMALL], capsys)
    assert ("a training share of 0.95 of 8 examples trains on 8 and tests on 0; each side "
            "needs at least 2: use a share from 0.25 to 0.75") in err


def test_sae_train_layer_beyond_the_model(capsys):
    err = _one_error_line(["sae", "train", "--layer", "99", "--steps", "1", *SMALL], capsys)
    assert err == ("error: layer 99 is not in model 'tiny-ioi', which has 4 layers: use 0 to 3 "
                   "(the residual stream after that layer) or -1 (the embeddings)")


def test_sae_stats_of_a_missing_file_fails_before_loading(tmp_path, capsys, monkeypatch):
    import acdc_engine.cli.sae as cli_sae

    monkeypatch.setattr(cli_sae, "task_problem", lambda a: pytest.fail("model loaded"))
    err = _one_error_line(["sae", "stats", str(tmp_path / "no.safetensors"), *SMALL], capsys)
    assert err == f"error: SAE file '{tmp_path / 'no.safetensors'}' does not exist"


def test_sae_stats_of_random_bytes(tmp_path, capsys):
    f = tmp_path / "sae.safetensors"
    f.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0),
                                dtype=torch.uint8).numpy().tobytes())
    err = _one_error_line(["sae", "stats", str(f), *SMALL], capsys)
    assert f"error: SAE file '{f}' is not a readable safetensors file (4096 bytes;" in err


def test_sae_stats_of_an_sae_for_another_model(tmp_path, capsys):
    from acdc_engine.evidence.sae import SAE

    f = SAE(768, 16, layer=1).save(tmp_path / "gpt2-small-sae.safetensors")
    err = _one_error_line(["sae", "stats", str(f), *SMALL], capsys)
    assert err == ("error: the SAE reads 768-dimensional activations (W_enc is [768, 16]), but "
                   "model 'tiny-ioi' has a 64-dimensional residual stream: it was made for "
                   "another model")


def test_neuron_slice_beyond_the_mlp(capsys):
    err = _one_error_line(["neurons", "--groups", "0:9999", *SMALL], capsys)
    assert "group '0:9999': 9999 is outside an MLP of 256 neurons" in err
