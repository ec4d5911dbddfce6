"""CLI options are checked before any work; what the redesign fixed on the way."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from acdc_engine.cli import build_parser, main
from acdc_engine.records.runs import _cell


@pytest.mark.parametrize("argv, message", [
    (["--edges", "-5"], "must be >= 0"),
    (["--threshold", "nan"], "finite number"),
    (["--examples", "0"], "at least 1"),
    (["--batch-size", "0"], "at least 1"),
    (["--target", "5"], "in (0, 1]"),
    (["--threads", "0"], "at least 1"),
])
def test_nonsense_options_fail_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["discover", *argv])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_setting_value_is_one_line(capsys):
    assert main(["discover", "--method", "acdc", "--set", "tau=abc", "--no-track"]) == 2
    err = capsys.readouterr().err
    assert "tau='abc' is not valid" in err and "Traceback" not in err


def test_unwritable_output_directory_fails_before_loading(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["discover", "--out", str(blocker / "run"), "--no-track", "--edges", "5"]) == 2
    assert "cannot write the output directory" in capsys.readouterr().err


def test_runs_table_keeps_signs_and_leading_digits():
    assert _cell(-0.0541, 6).strip() == "-0.054"
    assert _cell(0.98312, 6).strip() == "0.983"
    assert _cell(-123456.7, 6).strip().startswith("-1")


def test_sweep_help_names_its_default_experiment():
    out = subprocess.run([sys.executable, "-m", "acdc_engine.cli", "sweep", "--help"],
                         capture_output=True, text=True)
    assert "sweep-TASK" in " ".join(out.stdout.split())


def test_run_json_command_is_shell_quoted_and_replays(gpt2_path, tmp_path):
    from acdc_engine import discover
    from acdc_engine.testing import random_pairs

    pairs = tmp_path / "my pairs.jsonl"
    pairs.write_text("\n".join(json.dumps(r) for r in random_pairs(8, seed=4)))
    r = discover(str(gpt2_path), str(pairs), "eap", n_edges=5, out=tmp_path / "a b",
                 track=False, progress=False, render=False)
    cmd = json.loads((r.out_dir / "run.json").read_text())["command"]
    argv = shlex.split(cmd)
    assert argv[argv.index("--task") + 1] == str(pairs.resolve())
    assert main([*argv[1:], "--no-track", "--no-render", "--out", str(tmp_path / "again"),
                 "--no-progress"]) == 0
    again = json.loads((tmp_path / "again" / "circuit.json").read_text())
    assert len(again["edges"]) == r.circuit.number_of_edges()


def test_degenerate_full_and_empty_is_warned(gpt2_path, tmp_path):
    """Clean and corrupted prompts identical: full == empty, faithfulness is undefined."""
    from acdc_engine import discover
    from acdc_engine.testing import random_pairs

    rows = [{**r, "corrupted": r["clean"]} for r in random_pairs(6, seed=1)]
    pairs = tmp_path / "same.jsonl"
    pairs.write_text("\n".join(json.dumps(r) for r in rows))
    r = discover(str(gpt2_path), str(pairs), "eap", n_edges=5, track=False, progress=False,
                 render=False)
    assert any("nearly the same metric" in w for w in r.warnings)
    assert "warning: the full model" in r.summary()


def test_threads_option_sets_torch_threads(gpt2_path, tmp_path):
    code = ("import torch, sys; from acdc_engine.cli import main; "
            f"rc = main(['graph', '--model', {str(gpt2_path)!r}]); "
            "from acdc_engine.resources import set_threads; set_threads(1); "
            "print(torch.get_num_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip().endswith("1"), out.stderr
