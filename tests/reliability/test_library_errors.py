"""Errors from the libraries underneath (tokenizers, torch, json, the OS) reach the user as one
line (``error: ...``, exit 2), never as a traceback, and what was computed is kept; the second
round of hostile inputs (issue 22). Every case is a row of docs/reliability.md."""

from __future__ import annotations

import builtins
import importlib
import errno
import io
import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from acdc_engine import discover
from acdc_engine.cli import main
from acdc_engine.testing import random_pairs

QUIET = ["--no-track", "--no-render", "--no-progress"]


def _one_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def ioi_run(tmp_path_factory):
    """A small recorded discovery of the shipped tiny-ioi model."""
    out = tmp_path_factory.mktemp("ioi-run") / "run"
    discover(model="tiny-ioi", task="ioi", method="eap", n_edges=5, n_examples=8, out=out,
             track=False, render=False, progress=False)
    return out


@pytest.fixture
def pairs(tmp_path):
    def write(rows, name="pairs.jsonl"):
        p = tmp_path / name
        p.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return p

    return write


# ----- the boundary ----------------------------------------------------------------------------


def _raise_runtime_error(args):
    raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")


def test_an_unexpected_error_is_one_line_naming_where(monkeypatch, capsys):
    import acdc_engine.cli.graph as graph

    monkeypatch.setattr(graph, "_cmd_graph", _raise_runtime_error)
    assert main(["graph", "--model", "tiny-ioi"]) == 2
    line = _one_line(capsys.readouterr().err)
    where = _raise_runtime_error.__code__.co_firstlineno + 1
    assert line == ("error: RuntimeError: PytorchStreamWriter failed writing file data/0: file "
                    f"write failed (in _raise_runtime_error (test_library_errors.py:{where})) "
                    "(ACDC_DEBUG=1 shows the traceback)")


def test_acdc_debug_shows_the_traceback(monkeypatch):
    import acdc_engine.cli.graph as graph

    monkeypatch.setattr(graph, "_cmd_graph", _raise_runtime_error)
    monkeypatch.setenv("ACDC_DEBUG", "1")
    with pytest.raises(RuntimeError, match="PytorchStreamWriter"):
        main(["graph", "--model", "tiny-ioi"])


# ----- tasks that the model cannot take --------------------------------------------------------


def test_a_task_built_for_another_tokenizer(tmp_path, capsys):
    """tracr's word-level vocabulary has no unknown token (was: "WordLevel error: Missing
    [UNK] token from the vocabulary" and a traceback)."""
    assert main(["discover", "--model", "tracr-reverse", "--task", "ioi", "--edges", "5",
                 "--method", "eap", "--out", str(tmp_path / "run"), *QUIET]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line.startswith("error: task 'ioi' cannot be tokenized by the tokenizer of model "
                           "'tracr-reverse' (")
    assert "Missing [UNK] token" in line and "it was made for model 'tiny-ioi'" in line
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["status"] == "FAILED"


def test_compare_models_with_another_tokenizer(ioi_run, capsys):
    c = str(ioi_run / "circuit.json")
    assert main(["compare", c, c, "--models", "tiny-ioi", "tracr-reverse", "--examples",
                 "8"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "cannot be tokenized by the tokenizer of model 'tracr-reverse'" in line


def test_a_prompt_longer_than_the_context(gpt2_path, pairs, capsys):
    """(was: an IndexError from the position embedding, deep in the forward)"""
    rows = random_pairs(3, seed=1)
    long = " ".join(["w1"] * 2000)  # 10,000 characters
    rows[1] = {**rows[1], "clean": long, "corrupted": long}
    assert main(["discover", "--model", str(gpt2_path), "--task", str(pairs(rows)),
                 "--edges", "5", "--method", "eap", *QUIET]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Token indices sequence length" not in err
    assert "line 2: the prompt is 2000 tokens, longer than model" in err
    assert "reads (32 tokens, its context length)" in err


def test_a_json_file_as_a_task_says_which_files_are_tasks(tmp_path, capsys):
    f = tmp_path / "pairs.json"
    f.write_text("[]")
    assert main(["discover", "--task", str(f), "--edges", "5", *QUIET]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "no plugin reads '.json' files (a file of clean/corrupted pairs is .jsonl or .csv" \
        in line  # (was: "unknown task '…/pairs.json' (known: docstring, …)")


def test_per_position_answers_in_a_pairs_file(gpt2_path, pairs, tmp_path):
    """docs/pairs.md: the row format (positions, per-position answers, token sets) applies to
    pair files (was: "answer must be text, got list")."""
    rows = [{**r, "positions": [-2, -1], "answer": [" w1", r["answer"]],
             "wrong_answer": [" w2", r["wrong_answer"]]} for r in random_pairs(6, seed=2)]
    res = discover(model=str(gpt2_path), task=str(pairs(rows)), method="eap", n_edges=5,
                   track=False, render=False, progress=False)
    assert res.circuit.number_of_edges() > 0


def test_per_position_answers_are_still_checked(tmp_path, pairs):
    from acdc_engine.errors import TaskDataError
    from acdc_tasks.pairfile import read_pairs

    base = random_pairs(4, seed=3)
    rows = [{**base[0], "answer": [" w1", 5]},
            {**base[1], "answer": []},
            {**base[2], "positions": "last"},
            {**base[3], "answer_set": " w1"}]
    with pytest.raises(TaskDataError) as info:
        read_pairs(pairs(rows))
    msg = str(info.value)
    assert 'line 1: answer must be text, or a list of texts (one per read position), got ' \
           '[" w1", 5]' in msg
    assert "line 2: answer must be text, or a list of texts" in msg
    assert "line 3: positions must be \"all\" or a non-empty list of token indices" in msg
    assert "line 4: answer_set must be a non-empty list of texts (tokens)" in msg


# ----- run records -----------------------------------------------------------------------------


@pytest.fixture
def damaged_run(ioi_run, tmp_path):
    d = shutil.copytree(ioi_run, tmp_path / "damaged")
    (d / "run.json").write_text("{not json")
    return d


@pytest.mark.parametrize("command", [["report", "--no-pdf", "-n", "0"],
                                     ["stability", "-n", "0"]])
def test_a_run_json_that_is_not_json(damaged_run, command, capsys):
    assert main([command[0], str(damaged_run), *command[1:]]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line == (f"error: {damaged_run / 'run.json'} is not valid JSON (Expecting property "
                    "name enclosed in double quotes at line 1 column 2); it is not a run record "
                    "acdc wrote, or it was damaged")


def test_a_run_json_that_is_not_an_object(damaged_run, capsys):
    (damaged_run / "run.json").write_text("[1, 2]")
    assert main(["stability", str(damaged_run), "-n", "0"]) == 2
    assert "run.json is not a run record: expected a JSON object, got list" in \
        _one_line(capsys.readouterr().err)


def test_view_run_with_a_damaged_run_json_is_a_clear_error(damaged_run):
    from acdc_engine.errors import AcdcError
    from acdc_engine.records import find_run

    with pytest.raises(AcdcError, match="run.json is not valid JSON"):
        find_run(str(damaged_run))  # what `acdc view --run` reads a run directory with


def test_a_circuit_json_names_its_run(ioi_run):
    """`acdc evaluate --scores RUN/circuit.json` (or stability, report) reads that run (was:
    the circuit file read as a scores table)."""
    from acdc_engine.records import find_run

    run = find_run(str(ioi_run / "circuit.json"))
    assert run.scores_path == ioi_run / "edge_scores.tsv" and run.params["model"] == "tiny-ioi"


def test_acdc_runs_skips_a_run_json_that_is_a_list(tmp_path, monkeypatch, capsys):
    d = tmp_path / "results" / "exp" / "r1"
    d.mkdir(parents=True)
    (d / "run.json").write_text("[1]")
    monkeypatch.setenv("ACDC_RESULTS", str(tmp_path / "results"))
    assert main(["runs", "--no-track"]) == 0  # (was: AttributeError: 'list' object ...)


# ----- the disk --------------------------------------------------------------------------------


@pytest.fixture
def full_disk(monkeypatch):
    """``full_disk(d)``: from now on, files under ``d`` can be created (empty) but writing
    bytes into them fails with ENOSPC, as on a full disk."""
    real_open = io.open

    class Full:
        def __init__(self, f):
            self._f = f

        def write(self, data):
            if len(data):
                raise OSError(errno.ENOSPC, "No space left on device")
            return 0

        def __getattr__(self, name):
            return getattr(self._f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._f.close()

    def install(d: Path):
        d = str(Path(d).resolve())

        def fake_open(file, mode="r", *args, **kw):
            f = real_open(file, mode, *args, **kw)
            if (isinstance(file, (str, Path)) and any(m in mode for m in "wax")
                    and str(Path(file).resolve()).startswith(d + "/")):
                return Full(f)
            return f

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(io, "open", fake_open)

    return install


@pytest.fixture
def kept_under_tmp_path(tmp_path, monkeypatch):
    (tmp_path / "kept").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "kept"))
    return tmp_path / "kept"


def test_out_on_a_full_disk_keeps_the_run_elsewhere(gpt2_path, pairs, tmp_path, full_disk,
                                                    kept_under_tmp_path, capsys):
    """(was: ENOSPC as a chained traceback, a 0-byte run.json left in --out)"""
    task = pairs(random_pairs(6, seed=5))
    out = tmp_path / "run"
    out.mkdir()
    full_disk(out)
    assert main(["discover", "--model", str(gpt2_path), "--task", str(task), "--edges", "5",
                 "--method", "eap", "--out", str(out), *QUIET]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"warning: cannot write the run directory {out} (No space left on device); the " \
           "run's outputs are kept in " in err
    assert not (out / "run.json").exists() and not any(
        f.stat().st_size == 0 and f.name in ("circuit.json", "edge_scores.tsv")
        for f in out.iterdir())
    (kept,) = kept_under_tmp_path.iterdir()
    record = json.loads((kept / "run.json").read_text())
    assert record["status"] == "FINISHED" and record["kept_in"] == str(kept)
    for name in ("circuit.json", "edge_scores.tsv", "curve.tsv"):
        assert (kept / name).stat().st_size > 0 and name in record["artifacts"]


def test_run_json_is_written_atomically(tmp_path, monkeypatch):
    """A write of run.json that fails leaves the previous run.json, not an empty file."""
    from acdc_engine.records import Recorder, RunHandle
    import acdc_engine.records.recorder as recorder

    rec = Recorder(RunHandle("e"), "discover", tmp_path, {"run_id": "r1"})
    rec.write_json()
    before = (tmp_path / "run.json").read_text()

    def no_space(*a, **kw):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(recorder.os, "fsync", no_space)
    monkeypatch.setattr(recorder.tempfile, "mkdtemp", no_space)  # no rescue either
    rec.record["status"] = "FINISHED"
    with pytest.raises(OSError):
        rec.write_json()
    assert (tmp_path / "run.json").read_text() == before
    assert [f.name for f in tmp_path.iterdir()] == ["run.json"]  # no temporary file left


def test_a_checkpoint_under_a_file_is_refused_before_loading(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["discover", "--method", "acdc", "--set", f"checkpoint={blocker}/ck.pt",
                 "--edges", "5", *QUIET]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"checkpoint={str(blocker / 'ck.pt')!r} cannot be written: its directory {blocker} " \
           f"cannot be created: {blocker} is a file" in line


def test_a_checkpoint_directory_is_refused(tmp_path, capsys):
    assert main(["discover", "--method", "acdc", "--set", f"checkpoint={tmp_path}",
                 "--edges", "5", *QUIET]) == 2
    assert f"{tmp_path} is a directory; give the checkpoint a file name in it" in \
        _one_line(capsys.readouterr().err)


def test_a_checkpoint_that_cannot_be_written_mid_run(gpt2_path, pairs, tmp_path, monkeypatch,
                                                     capsys):
    """(was: torch's PytorchStreamWriter error mid-run, the run lost)"""
    checkpoints = importlib.import_module("acdc_engine.scoring.acdc.checkpoints")

    def failing_save(obj, f, *a, **kw):
        raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(checkpoints.torch, "save", failing_save)
    ck = tmp_path / "ck.pt"
    assert main(["discover", "--model", str(gpt2_path), "--task",
                 str(pairs(random_pairs(6, seed=6))), "--method", "acdc", "--set", "tau=0.01",
                 "--set", f"checkpoint={ck}", "--set", "checkpoint_every=1", "--edges", "5",
                 "--out", str(tmp_path / "run"), *QUIET]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.count(f"warning: cannot write the ACDC checkpoint {ck}: PytorchStreamWriter "
                     "failed writing file data/0: file write failed; going on without "
                     "checkpoints") == 1
    assert not ck.exists() and not list(tmp_path.glob("ck.pt.tmp*"))
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "FINISHED"


def test_a_report_directory_under_a_file(ioi_run, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["report", str(ioi_run), "--out", str(blocker / "rep"), "--no-pdf"]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"error: cannot write the report directory {blocker / 'rep'}: Not a directory")


# ----- the same --out twice --------------------------------------------------------------------


def test_a_second_run_into_the_same_out_is_refused(gpt2_path, pairs, tmp_path, capsys):
    """(was: both printed "written to"; only the second survived, no warning)"""
    task = str(pairs(random_pairs(6, seed=7)))
    out = tmp_path / "run"
    argv = ["discover", "--model", str(gpt2_path), "--task", task, "--method", "eap",
            "--out", str(out), *QUIET]
    assert main([*argv, "--edges", "5"]) == 0
    first = (out / "run.json").read_text()
    capsys.readouterr()
    assert main([*argv, "--edges", "3"]) == 2
    assert _one_line(capsys.readouterr().err) == (
        f"error: the output directory {out} holds a run already (its run.json); choose "
        "another --out, or pass --overwrite to replace that run")
    assert (out / "run.json").read_text() == first
    (out / "circuit.svg").write_text("<svg/>")  # a picture of the first run ...
    record = json.loads(first)
    record["artifacts"].append("circuit.svg")
    (out / "run.json").write_text(json.dumps(record))
    assert main([*argv, "--overwrite", "--edges", "3"]) == 0
    again = json.loads((out / "run.json").read_text())
    assert again["n_edges"] <= 3 and again["run_id"] != record["run_id"]
    assert not (out / "circuit.svg").exists()  # ... is not left beside the second's files


def test_an_empty_out_directory_is_fine(gpt2_path, pairs, tmp_path):
    out = tmp_path / "empty"
    out.mkdir()
    assert main(["discover", "--model", str(gpt2_path), "--task",
                 str(pairs(random_pairs(6, seed=8))), "--edges", "5", "--method", "eap",
                 "--out", str(out), *QUIET]) == 0


# ----- stability: bounded, with progress -------------------------------------------------------


@pytest.mark.parametrize("line, message", [
    ("stability RUN -n 100000", "argument -n: must be at most 100 (each subsample is a whole "
                                "rediscovery of the circuit), got 100000"),
    ("report RUN -n 101", "argument -n: must be at most 100"),
    ("discover --stability 1000", "argument --stability: must be at most 100"),
    ("stability RUN --boot 1000000000", "argument --boot: must be at most 100000"),
    ("compare --boot 0", "argument --boot: must be at least 1, got 0"),
])
def test_a_huge_count_is_refused_when_parsed(line, message, refused_when_parsed):
    """(was: `acdc stability RUN -n 100000` printed nothing for minutes: two days of work)"""
    refused_when_parsed(line, message)


def test_stability_shows_its_progress(ioi_run, tmp_path, monkeypatch, capsys):
    d = shutil.copytree(ioi_run, tmp_path / "run")
    monkeypatch.setenv("ACDC_PROGRESS", "1")
    assert main(["stability", str(d), "-n", "2", "--boot", "20"]) == 0
    err = capsys.readouterr().err
    assert "rediscovering (eap) on subsamples" in err and "/2 [" in err  # a tqdm bar


# ----- the tracking store ----------------------------------------------------------------------


def test_an_unusable_sqlite_store_fails_at_once(tmp_path, capsys):
    """(was: mlflow retried for ~110 s before the error)"""
    db = tmp_path / "mlflow.db"
    db.mkdir()  # a directory where the database should be: SQLite cannot open it
    t0 = time.perf_counter()
    assert main(["discover", "--tracking-uri", f"sqlite:///{db}", "--edges", "5",
                 "--method", "eap", "--no-render", "--no-progress"]) == 2
    assert time.perf_counter() - t0 < 30
    line = _one_line(capsys.readouterr().err)
    assert f"failed to open the store: {db} is a directory, not a database file" in line


def test_a_store_that_is_not_a_database_fails_at_once(tmp_path):
    from acdc_engine.records import TrackingError, store

    db = tmp_path / "mlflow.db"
    db.write_text("not a database, but long enough to have a header" * 4)
    t0 = time.perf_counter()
    with pytest.raises(TrackingError, match=f"{db}: file is not a database"):
        store.client(f"sqlite:///{db}")
    assert time.perf_counter() - t0 < 10


def test_a_store_under_a_file_says_so(tmp_path):
    from acdc_engine.records import TrackingError, store

    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(TrackingError, match=f"{blocker} is a file, not a directory"):
        store.client(f"sqlite:///{blocker}/mlflow.db")


def test_a_working_store_is_still_opened(tmp_path):
    from acdc_engine.records import store

    assert store.client(f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}") is not None
