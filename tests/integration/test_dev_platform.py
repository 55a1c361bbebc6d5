"""The local platform's emulators: data kept across restarts (clean or not), nothing left behind,
and missing prerequisites named with the way to get them."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from runtune.dev.emulators import (
    ManagedProcess,
    PrerequisiteMissing,
    ProcessFailed,
    RunningEmulators,
    check_prerequisites,
    start_emulators,
)
from runtune.dev.processes import group_alive, port_in_use
from runtune.firebase_rest import FirebaseAuthRest
from tests.support import sign_up

PROJECT = "demo-persist"
BUCKET = "persist"
SHARD = "users/u/datasets/d/train-00000.parquet"


@pytest.fixture
def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], RunningEmulators]:
    """Starts the emulators on free ports over one data folder, pointing the clients at them."""

    def _start() -> RunningEmulators:
        running = start_emulators(tmp_path / "data", project_id=PROJECT, bucket=BUCKET)
        for name, value in running.endpoints.env().items():
            monkeypatch.setenv(name, value)
        return running

    return _start


def _write_everything(running: RunningEmulators) -> str:
    """A Firestore document, a GCS object and an account; returns the account's uid."""
    from google.cloud import firestore

    from runtune.adapters.gcs import GcsBlobStore

    firestore.Client(project=PROJECT).document("jobs/j1").set({"status": "running"})
    GcsBlobStore.for_bucket(PROJECT, BUCKET).upload_bytes(SHARD, b"shard")
    return sign_up(running.endpoints.auth_host, email="persist@example.com")["uid"]


def _assert_everything_survived(running: RunningEmulators, uid: str) -> None:
    from google.cloud import firestore

    from runtune.adapters.gcs import GcsBlobStore

    assert os.environ["FIRESTORE_EMULATOR_HOST"] == running.endpoints.firestore_host
    assert firestore.Client(project=PROJECT).document("jobs/j1").get().to_dict() == {"status": "running"}
    assert GcsBlobStore.for_bucket(PROJECT, BUCKET).download_bytes(SHARD) == b"shard"
    session = FirebaseAuthRest("k", emulator_host=running.endpoints.auth_host).sign_in(
        "persist@example.com", "pa55word!"
    )
    assert session.uid == uid


@pytest.mark.emulators
def test_data_survives_a_clean_restart(start: Callable[[], RunningEmulators]) -> None:
    with start() as running:
        uid = _write_everything(running)

    with start() as running:
        _assert_everything_survived(running, uid)


@pytest.mark.emulators
def test_a_snapshot_survives_a_crash(start: Callable[[], RunningEmulators]) -> None:
    running = start()
    try:
        uid = _write_everything(running)
        assert running.snapshot()
    finally:
        for process in running.processes:
            process.kill()  # no export on exit: only the snapshot (and the objects on disk) remain

    with start() as running:
        _assert_everything_survived(running, uid)


@pytest.mark.emulators
def test_ephemeral_emulators_leave_nothing_behind() -> None:
    running = start_emulators()
    data_dir, pids = running.data_dir, list(running.pids.values())
    endpoints = running.endpoints
    hosts = [endpoints.firestore_host, endpoints.auth_host, endpoints.storage_host, endpoints.tasks_host]
    assert data_dir.is_dir() and len(pids) == 4

    running.stop()

    assert not data_dir.exists()
    assert not any(group_alive(pid) for pid in pids)
    assert not any(port_in_use(int(host.rsplit(":", 1)[1])) for host in hosts)


def _bin_dir(tmp_path: Path, *tools: str) -> Path:
    """A PATH folder holding links to only the given real tools."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    for tool in tools:
        real = shutil.which(tool)
        assert real is not None, f"{tool} is needed on this machine for the test"
        (folder / tool).symlink_to(real)
    return folder


@pytest.mark.emulators
def test_missing_java_is_named_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(PrerequisiteMissing) as info:
        check_prerequisites(path=str(_bin_dir(tmp_path, "gcloud", "node")))
    message = str(info.value)
    assert "Java 17+" in message and "apt-get install openjdk-17-jre-headless" in message
    assert "gcloud" not in message.lower() and "node" not in message.lower()  # only what is missing


@pytest.mark.emulators
def test_an_old_java_is_named_with_the_fix(tmp_path: Path) -> None:
    folder = _bin_dir(tmp_path, "gcloud", "node")
    java = folder / "java"
    java.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    with pytest.raises(PrerequisiteMissing, match=r"found Java 11 .*openjdk-17-jre-headless"):
        check_prerequisites(path=str(folder))


@pytest.mark.emulators
def test_a_bare_machine_gets_every_missing_tool_named(tmp_path: Path) -> None:
    with pytest.raises(PrerequisiteMissing) as info:
        check_prerequisites(path=str(tmp_path))
    message = str(info.value)
    assert "Java 17+" in message
    assert "gcloud components install cloud-firestore-emulator" in message
    assert "Node.js" in message


def _never_healthy(tmp_path: Path, name: str, script: str) -> ManagedProcess:
    """A process `name` running the shell `script`, health-checked on the discard port (nothing answers)."""
    return ManagedProcess(name, ["sh", "-c", script], tmp_path / f"{name}.log", health_url="http://127.0.0.1:9/")


def test_a_process_that_dies_at_start_shows_its_log(tmp_path: Path) -> None:
    process = _never_healthy(tmp_path, "broken", "echo 'cannot bind: address in use' >&2; exit 3")
    with pytest.raises(ProcessFailed, match=r"(?s)broken exited during start.*cannot bind: address in use"):
        process.start().wait_healthy(timeout_s=10)


def test_a_process_that_never_answers_is_stopped_with_its_group(tmp_path: Path) -> None:
    process = _never_healthy(tmp_path, "silent", "sleep 60 & echo waiting; wait")
    with pytest.raises(ProcessFailed, match=r"(?s)silent not healthy after 1s.*waiting"):
        process.start().wait_healthy(timeout_s=1)
    assert process.pid is not None
    process.stop(grace_s=5)
    assert not group_alive(process.pid)  # the `sleep` grandchild went with it
