"""Fixtures of the unit tests."""

from __future__ import annotations

import pytest

from tests.unit.settings_env import EMULATORS


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Every variable that picks a profile or an emulator cleared: the machine's own environment (an
    e2e platform's, a developer's shell) never leaks into a settings test."""
    for name in [
        *EMULATORS,
        "CLOUD_TASKS_EMULATOR_HOST",
        "RUNTUNE_PROFILE",
        "RUNTUNE_PROJECT_ID",
        "RUNTUNE_INTERNAL_TOKEN",
    ]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch
