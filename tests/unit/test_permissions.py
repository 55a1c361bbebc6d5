"""The permissions table against the code's own path builders, and the wrappers that enforce it locally."""

from __future__ import annotations

import io
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest
from google.api_core import exceptions as gexc

from runtune import permissions
from runtune.adapters.permitted import PermittedBlobStore, PermittedMetadataStore
from runtune.blob_layout import dataset_prefix, predictions_path, source_path, upload_prefix
from runtune.datasets.canonical import shard_path
from runtune.datasets.previews import preview_path
from runtune.ports.blobs import BlobStore
from runtune.ports.metadata import MetadataStore
from runtune.schemas.jobs import checkpoint_path, event_path, job_path

UID = "user-1"


def blob_allowed(deployable: str, path: str, access: str) -> bool:
    return permissions.of(deployable).allows_blob(path, access)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("deployable", "path", "access"),
    [
        ("preprocessing", upload_prefix(UID, "up-1") + "data.zip", "w"),
        ("preprocessing", upload_prefix(UID, "up-1"), "d"),
        ("preprocessing", f"users/{UID}/uploads/up-0/data.zip", "r"),  # the layout before `uploads/`
        ("preprocessing", shard_path(UID, "ds-1", "train", 0), "w"),
        ("preprocessing", preview_path(UID, "ds-1", "train", 0), "w"),
        ("preprocessing", source_path(UID, "ds-1", "a.csv"), "w"),
        ("preprocessing", dataset_prefix(UID, "ds-1"), "d"),
        ("trainer", shard_path(UID, "ds-1", "train", 0), "r"),
        ("trainer", f"users/{UID}/jobs/ftjob-1/checkpoints/step-000003/state.json", "w"),
        ("trainer", f"users/{UID}/jobs/ftjob-1/checkpoints/step-000003/", "d"),
        ("trainer", "models/google/gemma-3-4b-it/config.json", "r"),
        ("inference", f"users/{UID}/jobs/ftjob-1/export/adapter/adapter_config.json", "r"),
        ("inference", shard_path(UID, "ds-1", "test", 0), "r"),
        ("evaluate", predictions_path(UID, "eval-1"), "w"),
        ("inference", f"users/{UID}/vibe_checks/vibe-1/prompt-0.png", "w"),
        ("inference", f"users/{UID}/exports/exp-1/adapter.tar.gz", "w"),
        # Deleting a tuned model: its job's export folder and the exports made from it.
        ("inference", f"users/{UID}/jobs/ftjob-1/export/", "d"),
        ("inference", f"users/{UID}/exports/exp-1/", "d"),
        ("engine", f"users/{UID}/jobs/ftjob-1/export/adapter/adapter_model.safetensors", "r"),
    ],
)
def test_what_the_code_does_is_allowed(deployable: str, path: str, access: str) -> None:
    assert blob_allowed(deployable, path, access)


@pytest.mark.parametrize(
    ("deployable", "path", "access"),
    [
        # Read-only prefixes refuse writes and deletes.
        ("inference", f"users/{UID}/jobs/ftjob-1/export/adapter/adapter_config.json", "w"),
        ("inference", shard_path(UID, "ds-1", "test", 0), "d"),
        ("trainer", shard_path(UID, "ds-1", "train", 0), "w"),
        ("engine", f"users/{UID}/jobs/ftjob-1/export/adapter/x", "w"),
        ("preprocessing", f"users/{UID}/uploads/up-0/data.zip", "w"),
        # Prefixes a deployable never touches, and ones wider than a granted prefix.
        ("preprocessing", f"users/{UID}/jobs/ftjob-1/config.json", "r"),
        ("inference", f"users/{UID}/jobs/ftjob-1/checkpoints/step-000003/state.json", "r"),
        ("trainer", f"users/{UID}/datasets/", "r"),
        ("preprocessing", f"users/{UID}/", "d"),
        ("training", shard_path(UID, "ds-1", "train", 0), "r"),
        ("gateway", "models/x", "r"),
        # A segment placeholder never spans `..`.
        ("preprocessing", f"users/{UID}/datasets/../jobs/x", "r"),
    ],
)
def test_what_the_cloud_account_could_not_do_is_refused(deployable: str, path: str, access: str) -> None:
    assert not blob_allowed(deployable, path, access)


def test_document_access_follows_collections_without_ids() -> None:
    assert permissions.collection_of(event_path("ftjob-1", 3)) == "jobs/events"
    assert permissions.collection_of(f"{job_path('ftjob-1')}/checkpoints") == "jobs/checkpoints"
    trainer = permissions.of("trainer")
    assert trainer.allows_document(checkpoint_path("ftjob-1", 3), "w")
    assert trainer.allows_document("datasets/ds-1", "r")
    assert not trainer.allows_document("datasets/ds-1", "w")
    assert not trainer.allows_document("uploads/up-1", "r")
    assert not permissions.of("evaluate").allows_document(job_path("ftjob-1"), "w")


def test_an_unknown_deployable_is_named() -> None:
    with pytest.raises(ValueError, match=r"unknown deployable 'ingester'.*gateway"):
        permissions.of("ingester")


# -- the wrappers --------------------------------------------------------------------------------


@pytest.fixture
def inner_blobs() -> MagicMock:
    return MagicMock(spec=BlobStore)


@pytest.fixture
def inner_store() -> MagicMock:
    return MagicMock(spec=MetadataStore)


def test_blob_wrapper_passes_what_is_allowed(inner_blobs: MagicMock, tmp_path: Path) -> None:
    blobs = PermittedBlobStore(inner_blobs, "inference")
    adapter = f"users/{UID}/jobs/ftjob-1/export/adapter/"
    blobs.list(adapter)
    blobs.download_file(adapter + "a.json", tmp_path / "a.json")
    blobs.upload_bytes(predictions_path(UID, "eval-1"), b"{}")
    url = blobs.signed_download_url(f"users/{UID}/exports/exp-1/adapter.tar.gz", expires=timedelta(minutes=5))
    assert url is inner_blobs.signed_download_url.return_value
    inner_blobs.list.assert_called_once_with(adapter)
    inner_blobs.upload_bytes.assert_called_once_with(
        predictions_path(UID, "eval-1"), b"{}", content_type="application/octet-stream"
    )


def _blob_calls(path: str, tmp_path: Path) -> dict[str, Any]:
    return {
        "upload_bytes": lambda b: b.upload_bytes(path, b"x"),
        "upload_stream": lambda b: b.upload_stream(path, io.BytesIO(b"x")),
        "upload_file": lambda b: b.upload_file(path, tmp_path / "f"),
        "delete": lambda b: b.delete(path),
        "delete_prefix": lambda b: b.delete_prefix(path.rsplit("/", 1)[0] + "/"),
        "signed_upload_url": lambda b: b.signed_upload_url(path, content_type="a/b", expires=timedelta(minutes=1)),
        "resumable_upload_url": lambda b: b.resumable_upload_url(path, content_type="a/b", size=None, origin=None),
    }


@pytest.mark.parametrize(
    "method",
    [
        "upload_bytes",
        "upload_stream",
        "upload_file",
        "delete",
        "delete_prefix",
        "signed_upload_url",
        "resumable_upload_url",
    ],
)
def test_blob_wrapper_refuses_writes_to_a_read_only_prefix_as_a_403(
    method: str, inner_blobs: MagicMock, tmp_path: Path
) -> None:
    blobs = PermittedBlobStore(inner_blobs, "evaluate")
    path = f"users/{UID}/jobs/ftjob-1/export/adapter/adapter_model.safetensors"
    with pytest.raises(
        gexc.Forbidden, match=rf"evaluate may not (write|delete) 'users/{UID}/jobs/ftjob-1/export/adapter/"
    ):
        _blob_calls(path, tmp_path)[method](blobs)
    assert not getattr(inner_blobs, method).called


@pytest.mark.parametrize("method", ["download_bytes", "iter_chunks", "info", "list"])
def test_blob_wrapper_refuses_reads_outside_the_table(method: str, inner_blobs: MagicMock) -> None:
    blobs = PermittedBlobStore(inner_blobs, "preprocessing")
    with pytest.raises(gexc.Forbidden, match="preprocessing may not read"):
        getattr(blobs, method)(f"users/{UID}/jobs/ftjob-1/history.json")
    assert not getattr(inner_blobs, method).called


def test_blob_wrapper_refuses_signing_to_an_account_that_does_not_sign(inner_blobs: MagicMock) -> None:
    blobs = PermittedBlobStore(inner_blobs, "trainer")
    path = shard_path(UID, "ds-1", "train", 0)
    blobs.download_bytes(path)  # reading is the trainer's
    with pytest.raises(gexc.Forbidden, match="trainer may not sign a URL"):
        blobs.signed_download_url(path, expires=timedelta(minutes=1))
    assert not inner_blobs.signed_download_url.called


def test_a_refusal_is_what_the_real_client_raises_on_a_403(inner_blobs: MagicMock, inner_store: MagicMock) -> None:
    with pytest.raises(gexc.Forbidden) as blob_error:
        PermittedBlobStore(inner_blobs, "engine").upload_bytes("users/u/jobs/j/export/adapter/x", b"")
    assert blob_error.value.code == 403
    with pytest.raises(gexc.PermissionDenied) as store_error:
        PermittedMetadataStore(inner_store, "engine").get("jobs/ftjob-1")
    assert store_error.value.code == 403
    assert "no Firestore access" in str(store_error.value)


def test_metadata_wrapper_passes_what_is_allowed(inner_store: MagicMock) -> None:
    store = PermittedMetadataStore(inner_store, "training")
    store.get("datasets/ds-1")
    store.transact(job_path("ftjob-1"), lambda doc: doc)
    store.query(f"{job_path('ftjob-1')}/events", limit=5)
    store.set_many([(event_path("ftjob-1", 1), {}), (event_path("ftjob-1", 2), {})])
    inner_store.get.assert_called_once_with("datasets/ds-1")
    assert inner_store.transact.called and inner_store.query.called and inner_store.set_many.called


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.set("datasets/ds-1", {}), "training may not write 'datasets/ds-1'"),
        (lambda s: s.update("datasets/ds-1", {"a": 1}), "may not write"),
        (lambda s: s.create("uploads/up-1", {}), "collection 'uploads'"),
        (lambda s: s.delete("evaluations/e-1"), "may not write"),
        (lambda s: s.query("vibe_checks"), "training may not read 'vibe_checks'"),
        (lambda s: s.get("evaluations/x"), "may not read"),
        (lambda s: s.transact("datasets/ds-1", lambda d: d), "may not write"),
        (lambda s: s.create_many([(job_path("j"), {}), ("datasets/ds-1", {})]), "may not write 'datasets/ds-1'"),
        (lambda s: s.delete_tree("uploads/up-1"), "may not write"),
    ],
)
def test_metadata_wrapper_refuses_collections_outside_the_table(
    inner_store: MagicMock, call: Any, message: str
) -> None:
    store = PermittedMetadataStore(inner_store, "training")
    with pytest.raises(gexc.PermissionDenied, match=message):
        call(store)
    assert not inner_store.method_calls


def test_delete_tree_needs_every_subcollection_of_the_table_writable(inner_store: MagicMock) -> None:
    table = dict(permissions.DEPLOYABLES)
    reader = permissions.Permissions("test", firestore={"jobs": "rw", "jobs/events": "r"})
    table["events-reader"] = reader
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(permissions, "DEPLOYABLES", table)
        store = PermittedMetadataStore(inner_store, "events-reader")
        with pytest.raises(gexc.PermissionDenied, match="jobs/j1/events"):
            store.delete_tree("jobs/j1")
    PermittedMetadataStore(inner_store, "trainer").delete_tree("jobs/j1")
    inner_store.delete_tree.assert_called_once_with("jobs/j1")


def test_wiring_wraps_the_local_profile_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from runtune import wiring
    from runtune.settings import CommonSettings

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", "127.0.0.1:1")
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:1")
    local = CommonSettings()
    assert local.is_local
    assert isinstance(wiring.metadata_store(local, deployable="trainer"), PermittedMetadataStore)
    assert isinstance(wiring.blob_store(local, deployable="trainer"), PermittedBlobStore)
    with pytest.raises(ValueError, match="unknown deployable"):
        wiring.blob_store(local, deployable="nobody")


def test_secret_wrapper_lets_readers_get_only_and_answers_a_refusal_as_secret_manager_would(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from runtune.adapters.permitted import PermittedSecretStore
    from runtune.errors import UpstreamUnavailable
    from runtune.ports.secrets import SecretStore

    inner = MagicMock(spec=SecretStore)
    reader = PermittedSecretStore(inner, "ingest")
    reader.get(UID, "hf_token")
    inner.get.assert_called_once_with(UID, "hf_token")
    for call in (lambda s: s.put(UID, "hf_token", "v"), lambda s: s.delete(UID, "x"), lambda s: s.names(UID)):
        with pytest.raises(UpstreamUnavailable):
            call(reader)
    assert not (inner.put.called or inner.delete.called or inner.names.called)
    assert "secret manager call refused" in caplog.text
    with pytest.raises(UpstreamUnavailable):
        PermittedSecretStore(inner, "inference").get(UID, "hf_token")
    manager = PermittedSecretStore(inner, "training")
    manager.put(UID, "hf_token", "v")
    manager.names(UID)
    assert inner.put.called and inner.names.called
