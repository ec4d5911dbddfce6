"""Start-up: argument and file checks, ``acdc --help`` and loading the plugin modules do not
import torch, transformers or mlflow (they took 15-30 s on a loaded 2-core machine)."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "mlflow", "optuna")

PROBE = """
import sys
{body}
heavy = [m for m in {heavy!r} if m in sys.modules]
print(",".join(heavy) or "none")
"""


def _heavy_after(body: str) -> str:
    out = subprocess.run([sys.executable, "-c", PROBE.format(body=body, heavy=HEAVY)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1]


def test_plugin_modules_import_nothing_heavy_at_registration():
    assert _heavy_after("import acdc_builtins, acdc_tracr, acdc_tasks.plugin, "
                        "acdc_tasks.pairfile") == "none"


def test_option_and_file_checks_import_nothing_heavy():
    body = """
from acdc_engine.cli import build_parser, main
import acdc_engine.loading, acdc_engine.records.signals
for argv in (["discover", "--edges", "-5"], ["sweep", "--model", "./no/such/model"],
             ["sweep", "--task", "missing.jsonl"], ["--help"]):
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        pass
"""
    assert _heavy_after(body) == "none"
