"""Benchmarks are scripts, not a package: make ``benchmarks/`` importable for these tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="session")
def bench_dir() -> Path:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return BENCH
