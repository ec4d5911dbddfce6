"""Nonsense options are refused when the command line is parsed (exit 2, one line, before any
heavy import), and bad names and values when the command starts, before the model loads.
Every case is a row of docs/reliability.md."""

from __future__ import annotations

import shutil

import pytest

from acdc_engine.cli import build_parser, main

PARSE_ERRORS = [  # (command line, what the user is told)
    ("discover --edges -5", "argument --edges: must be >= 0, got -5"),
    ("discover --edges many", "argument --edges: expected a whole number, got 'many'"),
    ("discover --threshold nan", "argument --threshold: expected a finite number, got 'nan'"),
    ("discover --threshold inf", "argument --threshold: expected a finite number, got 'inf'"),
    ("discover --edges 5 --threshold 0.1", "argument --threshold: not allowed with argument "
                                           "--edges"),
    ("discover --examples 0", "argument --examples: must be at least 1, got 0"),
    ("discover --examples -3", "argument --examples: must be >= 0, got -3"),
    ("discover --batch-size 0", "argument --batch-size: must be at least 1, got 0"),
    ("discover --target 5", "argument --target: must be in (0, 1], got 5"),
    ("discover --target 0", "argument --target: must be in (0, 1], got 0"),
    ("discover --target nan", "argument --target: expected a finite number, got 'nan'"),
    ("discover --threads 0", "argument --threads: must be at least 1, got 0"),
    ("discover --ig-steps 0", "argument --ig-steps: must be at least 1, got 0"),
    ("discover --ablation resample", "argument --ablation: invalid choice: 'resample'"),
    ("discover --seed x", "argument --seed: invalid int value: 'x'"),
    ("sweep --n-trials -1", "argument --n-trials: must be >= 0, got -1"),
    ("sweep --heartbeat 0", "argument --heartbeat: must be a positive number of seconds, got 0"),
    ("sweep --grace -2", "argument --grace: must be a positive number of seconds, got -2"),
    ("sweep --tau-min nan", "argument --tau-min: expected a finite number, got 'nan'"),
    ("sweep --timeout inf", "argument --timeout: expected a finite number, got 'inf'"),
    ("sweep --model ./no/such/model", "argument --model: model path './no/such/model' does "
                                      "not exist"),
    ("sweep --task missing-pairs.jsonl", "argument --task: task file 'missing-pairs.jsonl' "
                                         "does not exist"),
    ("frobnicate", "argument command: invalid choice: 'frobnicate'"),
]


@pytest.mark.parametrize("line, message", PARSE_ERRORS, ids=[c for c, _ in PARSE_ERRORS])
def test_nonsense_is_refused_when_parsed(line, message, refused_when_parsed):
    refused_when_parsed(line, message)


def test_a_broken_model_directory_is_refused_when_parsed(gpt2_path, tmp_path, capsys):
    model = shutil.copytree(gpt2_path, tmp_path / "m")
    (model / "model.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["sweep", "--model", str(model)])
    assert "model.safetensors is not a valid safetensors file: only 5 bytes" in \
        capsys.readouterr().err


START_ERRORS = [  # refused when the command starts, before the model is loaded
    (["discover", "--method", "acdc", "--set", "tau=abc"], "tau='abc' is not valid"),
    (["discover", "--set", "ig_steps"], "--set expects KEY=VALUE, got 'ig_steps'"),
    (["discover", "--method", "magic"], "unknown method 'magic'"),
    (["discover", "--task", "no-such-task"], "unknown task 'no-such-task'"),
    (["discover", "--metric", "accuracy2"], "unknown metric 'accuracy2'"),
    (["discover", "--device", "tpu"], "unknown device 'tpu'"),
    (["discover", "--dtype", "float7"], "float7"),
]


@pytest.mark.parametrize("argv, message", START_ERRORS, ids=[" ".join(a) for a, _ in
                                                             START_ERRORS])
def test_bad_names_and_values_fail_before_loading(argv, message, capsys):
    assert main([*argv, "--no-track", "--no-render", "--edges", "5"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
