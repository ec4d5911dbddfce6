"""acdc discover --selection / --method a,b --ensemble: parsing, one-line errors, a run."""

from __future__ import annotations

import json

import pytest

from acdc_engine.cli import build_parser, main


def test_cli_names_match_the_library():
    from acdc_engine.cli import discover as cli
    from acdc_engine.evaluation import selection as lib

    assert (cli.SELECTIONS, cli.ENSEMBLES, cli.NORMALISATIONS) == (
        lib.SELECTIONS, lib.ENSEMBLES, lib.NORMALISATIONS)


@pytest.mark.parametrize("argv, message", [
    (["--selection", "greedy"], "invalid choice: 'greedy'"),
    (["--ensemble", "median"], "invalid choice: 'median'"),
    (["--normalisation", "z"], "invalid choice: 'z'"),
    (["--bootstrap", "0"], "at least 1"),
    (["--min-frequency", "2"], "in (0, 1]"),
    (["--ilp-time-limit", "-1"], "positive number of seconds"),
])
def test_bad_selection_options_fail_at_parsing(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        build_parser().parse_args(["discover", *argv])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_selection_without_its_size_is_one_line(capsys):
    assert main(["discover", "--selection", "ilp", "--no-track"]) == 2
    err = capsys.readouterr().err
    assert "selection 'ilp' needs a number of edges" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


def test_discover_ilp_ensemble_run(gpt2_path, tmp_path, capsys):
    from acdc_engine.testing import random_pairs

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in random_pairs(8, seed=1)))
    out = tmp_path / "run"
    rc = main(["discover", "--model", str(gpt2_path), "--task", str(pairs), "--method",
               "eap,eap-ig", "--set", "ig_steps=2", "--ensemble", "min", "--selection", "ilp",
               "--edges", "9", "--no-track", "--no-render", "--no-progress", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())
    p = run["params"]
    assert (p["selection"], p["ensemble"], p["method"]) == ("ilp", "min", "eap,eap-ig")
    assert run["n_edges"] <= 9
    assert "--selection ilp" in run["command"] and "--ensemble min" in run["command"]
