"""Fixtures for the shipped ``gpt2-ioi-bpe`` model: loaded once per session, by name."""

from __future__ import annotations

import pytest

NAME = "gpt2-ioi-bpe"


@pytest.fixture(scope="session")
def bpe_model():
    """The shipped model as the engine loads it (by its shipped name, offline)."""
    from acdc_engine import load_model

    return load_model(NAME, device="cpu")
