"""Small conveniences of the ``acdc`` command: --version, shell completion, an example in
every command's --help, and the README's sentence on the extras."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from acdc_engine import __version__
from acdc_engine.cli import build_parser, main

ROOT = Path(__file__).parents[2]


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"acdc-engine {__version__}"


def _complete(line: str, tmp_path: Path) -> list[str]:
    """What the shell gets for ``line`` (cursor at its end), by argcomplete's own protocol:
    the environment bash's completion hook sets, the answer written to a file."""
    out = tmp_path / "completions"
    env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_SHELL": "bash",
           "COMP_LINE": line, "COMP_POINT": str(len(line)), "COMP_TYPE": "9",
           "_ARGCOMPLETE_IFS": "\n", "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}
    proc = subprocess.run([sys.executable, "-c", "from acdc_engine.cli import main; main()"],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out.read_text().split()


def test_completion_of_a_command_and_an_option(tmp_path):
    assert _complete("acdc dis", tmp_path) == ["discover"]
    assert "pairs" in _complete("acdc pa", tmp_path)
    assert "--strategy" in _complete("acdc pairs make p.txt --str", tmp_path)


def _subparsers(parser, prefix=("acdc",)):
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                yield (*prefix, name), sub
                yield from _subparsers(sub, (*prefix, name))


def test_every_command_help_shows_an_example(monkeypatch):
    """One ``example: acdc COMMAND ...`` line in each --help, not wrapped on an 80-column
    terminal (a command module's own epilog: keep it under 79 characters)."""
    monkeypatch.setenv("COLUMNS", "80")
    commands = list(_subparsers(build_parser()))
    assert len(commands) >= 15
    names = {" ".join(c) for c, _ in commands}
    assert {"acdc discover", "acdc runs", "acdc pairs", "acdc pairs make"} <= names
    for command, sub in commands:
        examples = [ln for ln in sub.format_help().splitlines() if ln.startswith("example: ")]
        assert len(examples) == 1, f"{' '.join(command)} --help has no example line"
        # the example runs this command
        assert examples[0].removeprefix("example: ").startswith(" ".join(command[:2]))
        if command[1] in OURS:
            assert examples[0] == sub.epilog, f"{' '.join(command)}: the example wraps"


# the commands whose examples this test keeps on one line (others' modules choose theirs)
OURS = {"discover", "pairs", "runs", "compare", "evaluate", "graph", "neurons", "plugins",
        "probe", "report", "sae", "stability", "sweep", "view"}


def test_readme_names_the_extras_all_includes():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    (ref,) = extras["all"]
    in_all = set(re.fullmatch(r"acdc-engine\[([\w,\s-]+)\]", ref).group(1).replace(" ", "")
                 .split(","))
    text = " ".join((ROOT / "README.md").read_text().split())
    sentence = re.search(r"`all` is ([^.;]*)[.;]", text)
    assert sentence, "README: no sentence saying what `all` is"
    said = set(re.findall(r"`([\w-]+)`", sentence.group(1)))
    assert said == in_all, f"README says `all` is {sorted(said)}; pyproject: {sorted(in_all)}"
    assert in_all <= set(extras)
