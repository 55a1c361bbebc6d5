"""Session-scoped fixtures: the real emulators, started once per test run on free ports."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from runtune.dev.emulators import EmulatorEndpoints, EmulatorPorts, start_emulators


@pytest.fixture(scope="session")
def emulators(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorEndpoints]:
    running = start_emulators(
        tmp_path_factory.mktemp("emulators"),
        ports=EmulatorPorts.free(),
        project_id="demo-runtune-test",
        bucket="runtune-test",
    )
    patch = pytest.MonkeyPatch()
    for name, value in running.endpoints.env().items():
        patch.setenv(name, value)
    try:
        yield running.endpoints
    finally:
        patch.undo()
        running.stop()
