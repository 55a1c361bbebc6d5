"""Session-scoped fixtures: the real emulators, started once per test run."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class ManualEndpoints:
    project_id: str
    bucket: str
    firestore_host: str
    storage_host: str
    auth_host: str


@pytest.fixture(scope="session")
def emulators() -> Iterator[ManualEndpoints]:
    endpoints = ManualEndpoints("demo-runtune-test", "runtune-test", "127.0.0.1:18090", "http://127.0.0.1:19023", "127.0.0.1:19099")
    mp = pytest.MonkeyPatch()
    mp.setenv("FIRESTORE_EMULATOR_HOST", endpoints.firestore_host)
    mp.setenv("STORAGE_EMULATOR_HOST", endpoints.storage_host)
    mp.setenv("FIREBASE_AUTH_EMULATOR_HOST", endpoints.auth_host)
    yield endpoints
    mp.undo()
