"""The local platform's emulators keep data across restarts and name missing prerequisites."""

import os

import pytest

from runtune.dev.emulators import EmulatorPorts, PrerequisiteMissing, check_prerequisites, start_emulators
from tests.support import sign_up

pytestmark = pytest.mark.emulators


def test_missing_prerequisites_are_named_with_a_fix(tmp_path) -> None:
    with pytest.raises(PrerequisiteMissing) as info:
        check_prerequisites(path=str(tmp_path))
    message = str(info.value)
    assert "Java 17+" in message and "apt-get install openjdk-17-jre-headless" in message
    assert "Google Cloud CLI" in message
    assert "Node.js" in message


def test_data_survives_a_restart(tmp_path, monkeypatch) -> None:
    from google.cloud import firestore

    from runtune.adapters.gcs import GcsBlobStore

    data_dir = tmp_path / "data"

    def start():
        running = start_emulators(data_dir, ports=EmulatorPorts.free(), project_id="demo-persist", bucket="persist")
        for name, value in running.endpoints.env().items():
            monkeypatch.setenv(name, value)
        return running

    with start() as running:
        firestore.Client(project="demo-persist").document("jobs/j1").set({"status": "running"})
        GcsBlobStore.for_bucket("demo-persist", "persist").upload_bytes("users/u/datasets/d/train.parquet", b"shard")
        account = sign_up(running.endpoints.auth_host, email="persist@example.com")

    with start() as running:
        assert os.environ["FIRESTORE_EMULATOR_HOST"] == running.endpoints.firestore_host
        assert firestore.Client(project="demo-persist").document("jobs/j1").get().to_dict() == {"status": "running"}
        blobs = GcsBlobStore.for_bucket("demo-persist", "persist")
        assert blobs.download_bytes("users/u/datasets/d/train.parquet") == b"shard"
        from runtune.firebase_rest import FirebaseAuthRest

        session = FirebaseAuthRest("k", emulator_host=running.endpoints.auth_host).sign_in(
            "persist@example.com", "pa55word!"
        )
        assert session.uid == account["uid"]
