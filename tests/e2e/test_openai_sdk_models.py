"""`models.retrieve` and `models.delete` with the unmodified `openai` SDK through the gateway: a tuned
model (a scripted job, its export folder written as the trainer leaves it) is retrieved, exported,
deleted with its files and exports, and answers 404 everywhere afterwards; another user's is not
found; a base model cannot be deleted."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from tests.e2e.jobs_support import put_dataset, wait_for
from tests.support import sign_up

pytestmark = pytest.mark.platform

BASE = "tiny-gemma-3-vision"


class Emulated:
    """The bucket and Firestore as the platform's emulators hold them (what the trainer would write)."""

    def __init__(self, platform: Any) -> None:
        from runtune.adapters.firestore import FirestoreMetadataStore
        from runtune.adapters.gcs import GcsBlobStore

        with pytest.MonkeyPatch.context() as patch:
            for name, value in platform.emulator_env.items():
                patch.setenv(name, value)
            self.blobs = GcsBlobStore.for_bucket(platform.project_id, platform.emulator_env["RUNTUNE_BUCKET"])
            self.store = FirestoreMetadataStore.for_project(platform.project_id)


@pytest.fixture
def emulated(platform: Any) -> Emulated:
    return Emulated(platform)


def _user(platform: Any) -> tuple[dict[str, str], OpenAI, httpx.Client]:
    user = sign_up(platform.auth_host)
    sdk = OpenAI(base_url=f"{platform.gateway_url}/v1", api_key=user["id_token"], max_retries=0)
    http = httpx.Client(
        base_url=platform.gateway_url, headers={"authorization": f"Bearer {user['id_token']}"}, timeout=60
    )
    return user, sdk, http


@pytest.fixture
def owner(platform: Any) -> Iterator[tuple[dict[str, str], OpenAI, httpx.Client]]:
    user, sdk, http = _user(platform)
    yield user, sdk, http
    http.close()


def _tuned_model(platform: Any, emulated: Emulated, uid: str, sdk: OpenAI) -> tuple[str, str]:
    """A succeeded job whose export folder holds an adapter and a merged model, as the trainer leaves it."""
    dataset_id = put_dataset(platform, uid)
    job = sdk.fine_tuning.jobs.create(model=BASE, training_file=dataset_id, metadata={"script": "succeed"})
    wait_for(lambda: sdk.fine_tuning.jobs.retrieve(job.id).status == "succeeded", timeout_s=120)
    folder = f"users/{uid}/jobs/{job.id}/export"
    emulated.blobs.upload_bytes(f"{folder}/adapter/adapter_config.json", b'{"r": 8}', content_type="application/json")
    emulated.blobs.upload_bytes(f"{folder}/adapter/adapter_model.safetensors", b"weights")
    emulated.blobs.upload_bytes(f"{folder}/merged/model.safetensors", b"merged weights")
    export = {"adapter": f"{folder}/adapter/", "merged": f"{folder}/merged/"}
    emulated.store.update(f"jobs/{job.id}", {"runtune": {"export": export}})
    model = sdk.fine_tuning.jobs.retrieve(job.id).fine_tuned_model
    assert model == f"ft:{BASE}:{job.id}"
    return job.id, model


def test_a_tuned_model_is_retrieved_then_deleted_with_its_files(platform: Any, emulated: Emulated, owner) -> None:
    user, sdk, http = owner
    job_id, model = _tuned_model(platform, emulated, user["uid"], sdk)

    found = sdk.models.retrieve(model)
    assert (found.id, found.object, found.owned_by) == (model, "model", user["uid"])
    assert found.created > 0
    exports = [http.post("/v1/exports", json={"model": model, "format": kind}) for kind in ("adapter", "merged")]
    assert [e.status_code for e in exports] == [200, 200], [e.text for e in exports]
    archive = f"users/{user['uid']}/exports/{exports[0].json()['id']}/"
    assert emulated.blobs.list(archive)

    # Its model checkpoint (the scripted trainer's, at step 3) is a model too, deleted with it.
    checkpoint = sdk.fine_tuning.jobs.checkpoints.list(job_id).data[0].fine_tuned_model_checkpoint
    assert checkpoint == f"{model}:ckpt-step-3"
    found = sdk.models.retrieve(checkpoint)
    assert (found.id, found.owned_by, found.model_extra["fine_tuning_job"]) == (checkpoint, user["uid"], job_id)
    folder = f"users/{user['uid']}/jobs/{job_id}/export/checkpoints/step-000003/"
    emulated.blobs.upload_bytes(folder + "adapter_config.json", b'{"r": 8}', content_type="application/json")
    emulated.blobs.upload_bytes(folder + "adapter_model.safetensors", b"checkpoint weights")
    as_adapter = http.post("/v1/exports", json={"model": checkpoint, "format": "adapter"})
    assert as_adapter.status_code == 200, as_adapter.text
    merged = http.post("/v1/exports", json={"model": checkpoint, "format": "merged"})
    assert merged.status_code == 400 and merged.json()["error"]["param"] == "format"
    with pytest.raises(openai.PermissionDeniedError) as alone:
        sdk.models.delete(checkpoint)
    assert alone.value.body["code"] == "model_not_deletable" and model in alone.value.body["message"]

    deleted = sdk.models.delete(model)
    assert (deleted.id, deleted.object, deleted.deleted) == (model, "model", True)
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve(checkpoint)
    assert sdk.fine_tuning.jobs.checkpoints.list(job_id).data == []

    with pytest.raises(openai.NotFoundError) as missing:
        sdk.models.retrieve(model)
    assert missing.value.body["code"] == "model_not_found"
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        sdk.models.delete(model)  # deleted already
    assert model not in [m.id for m in sdk.models.list().data]
    assert http.post("/v1/exports", json={"model": model, "format": "adapter"}).status_code == 404
    for export in exports:
        assert http.get(f"/v1/exports/{export.json()['id']}").status_code == 404
    assert emulated.blobs.list(f"users/{user['uid']}/jobs/{job_id}/export/") == []
    assert emulated.blobs.list(archive) == []
    # The job stays in the history, as OpenAI keeps it, with the id it produced.
    job = sdk.fine_tuning.jobs.retrieve(job_id)
    assert job.status == "succeeded" and job.fine_tuned_model == model


def test_another_users_tuned_model_is_not_found(platform: Any, emulated: Emulated, owner) -> None:
    user, sdk, _ = owner
    _, model = _tuned_model(platform, emulated, user["uid"], sdk)
    _, stranger, stranger_http = _user(platform)
    with stranger_http:
        with pytest.raises(openai.NotFoundError) as retrieved:
            stranger.models.retrieve(model)
        assert retrieved.value.body["param"] == "model"
        with pytest.raises(openai.NotFoundError):
            stranger.models.delete(model)
        for call in (stranger.models.retrieve, stranger.models.delete):
            with pytest.raises(openai.NotFoundError):
                call(f"{model}:ckpt-step-3")  # the owner's checkpoint: as unknown as a missing one
    assert sdk.models.retrieve(model).id == model, "the owner's model is untouched"


@pytest.mark.parametrize("base", [BASE, "google/gemma-3-4b-it"])
def test_base_models_are_retrieved_but_cannot_be_deleted(owner, base: str) -> None:
    _, sdk, _ = owner
    found = sdk.models.retrieve(base)  # a `/` in the id: the SDK sends it as %2F
    assert (found.id, found.object) == (base, "model")
    with pytest.raises(openai.PermissionDeniedError) as refused:
        sdk.models.delete(base)
    assert refused.value.body["code"] == "model_not_deletable" and refused.value.body["param"] == "model"
    assert sdk.models.retrieve(base).id == base


@pytest.mark.parametrize("model", ["ft:tiny-gemma-3-vision:ftjob-doesnotexist", "ft:tiny-gemma-3-vision", "no-such"])
def test_unknown_models_are_not_found(owner, model: str) -> None:
    _, sdk, _ = owner
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve(model)
    with pytest.raises(openai.NotFoundError):
        sdk.models.delete(model)
