"""Fixtures of the unit tests."""

from __future__ import annotations

import pytest

from runtune.settings import EMULATOR_VARIABLES


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Every variable that picks a profile or an emulator cleared: the machine's own environment (an
    e2e platform's, a developer's shell) never leaks into a settings test."""
    for name in [
        *EMULATOR_VARIABLES,
        "RUNTUNE_PROFILE",
        "RUNTUNE_PROJECT_ID",
        "RUNTUNE_INTERNAL_TOKEN",
    ]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch
