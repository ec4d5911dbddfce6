"""acdc mib export / evaluate / pairs, and acdc evaluate --mib-file."""

from __future__ import annotations

import json

from acdc_engine.cli import main


def test_export_then_evaluate(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["discover", "--model", "tiny-ioi", "--task", "ioi", "--method", "eap",
                 "--edges", "20", "--examples", "8", "--no-track", "--no-render",
                 "--no-progress", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["mib", "export", str(run), str(tmp_path / "sub"), "--model-name",
                 "tiny"]) == 0
    path = tmp_path / "sub" / "ioi_tiny" / "importances.json"
    assert path.is_file() and str(path) in capsys.readouterr().out
    out_json = tmp_path / "ev.json"
    assert main(["mib", "evaluate", str(path), "--model", "tiny-ioi", "--task", "ioi",
                 "--examples", "8", "--no-progress", "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "MIB CPR" in text and "the file's circuit" in text
    a = json.loads(out_json.read_text())
    # the same through acdc evaluate --mib-file
    out2 = tmp_path / "ev2.json"
    assert main(["evaluate", "--mib-file", str(path), "--model", "tiny-ioi", "--task", "ioi",
                 "--examples", "8", "--no-progress", "--json", str(out2)]) == 0
    b = json.loads(out2.read_text())
    assert (a["mib"]["cpr"], a["mib"]["cmd"]) == (b["mib"]["cpr"], b["mib"]["cmd"])


def test_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "x.json"
    bad.write_text("[1, 2]")
    assert main(["mib", "evaluate", str(bad), "--model", "tiny-ioi", "--task", "ioi"]) == 2
    err = capsys.readouterr().err
    assert "not a MIB circuit file" in err and len(err.strip().splitlines()) == 1
    assert main(["evaluate", "--mib-file", str(bad), "--task", "ioi"]) == 2
    assert "needs --model" in capsys.readouterr().err
    assert main(["mib", "pairs", str(bad), str(tmp_path / "p.jsonl")]) == 2
    assert "row 1" in capsys.readouterr().err


def test_pairs_conversion(tmp_path, capsys):
    row = {"prompt": "12+5=", "label": 17, "random_counterfactual": {"prompt": "31+2=",
                                                                     "label": 33}}
    src = tmp_path / "arith.jsonl"
    src.write_text(json.dumps(row) + "\n")
    assert main(["mib", "pairs", str(src), str(tmp_path / "p.jsonl")]) == 0
    assert json.loads((tmp_path / "p.jsonl").read_text()) == {
        "clean": "12+5=", "corrupted": "31+2=", "answer": "17", "wrong_answer": "33"}
