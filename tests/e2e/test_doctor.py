"""`runtune doctor` against a real local platform: all green, then one component down and named.

Its own platform (not the session's `platform` fixture): the test stops one of its components.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from runtune.cli.main import app
from runtune.dev.platform import LocalPlatform, read_state
from runtune.doctor.local import local_checks
from tests.support import started_platform

SCRIPTED = json.dumps([sys.executable, "-m", "tests.e2e.scripted_trainer"])


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPlatform]:
    local_dir = tmp_path_factory.mktemp("doctor")
    with started_platform(local_dir, "demo-runtune-doctor", demo_content=False) as (platform, _):
        yield platform


@pytest.fixture
def doctor_env(running: LocalPlatform) -> dict[str, str]:
    # The trainer as the e2e platform runs it (the scripted stand-in: no torch import); ingestion and
    # evaluations with their real modules (`python -m jobs.ingest`, `python -m jobs.evaluate`).
    return {
        "RUNTUNE_LOCAL_DIR": str(running.config.local_dir),
        "RUNTUNE_TRAINER_COMMAND": SCRIPTED,
    }


def test_doctor_reports_all_green_then_names_the_component_that_is_down(running, doctor_env, monkeypatch) -> None:
    runner = CliRunner()
    green = runner.invoke(app, ["doctor"], env=doctor_env)
    assert green.exit_code == 0, green.output
    assert "All" in green.output and "checks passed" in green.output

    state = read_state(running.config)
    assert state is not None
    for name, value in doctor_env.items():
        monkeypatch.setenv(name, value)
    names = {check.name for check in local_checks(state)}
    assert {
        "gateway: reachable",
        "training: private",
        "engine: serves the bases",
        "storage emulator: bucket runtune-local",
    } <= names

    [engine] = [process for process in running.processes if process.name == "engine"]
    engine.stop()

    red = runner.invoke(app, ["doctor"], env=doctor_env)
    assert red.exit_code == 1, red.output
    assert "engine: reachable: runtune dev down && runtune dev up --detach" in red.output
    assert "engine.log" in red.output
    failed = {check.name for check in local_checks(state) if not check.ok}
    assert failed == {"engine: reachable", "engine: serves the bases"}


def test_doctor_without_a_platform_says_how_to_start_one(tmp_path) -> None:
    result = CliRunner().invoke(app, ["doctor"], env={"RUNTUNE_LOCAL_DIR": str(tmp_path)})
    assert result.exit_code == 1
    assert "runtune dev up" in result.output


def test_cloud_only_options_need_a_project(running, doctor_env) -> None:
    result = CliRunner().invoke(app, ["doctor", "--gateway", "https://example.invalid"], env=doctor_env)
    assert result.exit_code == 2
    assert "--project" in result.output
