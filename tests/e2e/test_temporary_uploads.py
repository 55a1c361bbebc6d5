"""Upload objects are temporary (the bucket's lifecycle deletes what is under `uploads/`): a dataset keeps
its own copy of its source, and an expired upload makes no dataset."""

from __future__ import annotations

from runtune.adapters.firestore import FirestoreMetadataStore
from tests.datasets.builders import chat_line
from tests.datasets.client import api, bucket, create, upload, wait
from tests.support import sign_up


def test_a_dataset_outlives_its_upload_object(platform, monkeypatch) -> None:
    user = sign_up(platform.auth_host)
    data = chat_line("q", "a").encode() + b"\n"
    with api(platform.gateway_url, user["id_token"]) as client:
        made = upload(client, "kept.jsonl", data)
        dataset = wait(client, create(client, made["id"])["id"])
        assert dataset["status"] == "ready", dataset
        blobs = bucket(platform.emulator_env, monkeypatch)
        assert [info.path for info in blobs.list(f"uploads/{user['uid']}/{made['id']}/")]
        # What the lifecycle rule does a day after the upload expires.
        blobs.delete_prefix(f"uploads/{user['uid']}/{made['id']}/")
        content = client.get(f"/v1/files/{dataset['id']}/content")
        assert content.status_code == 200, content.text
        assert content.content == data


def test_an_expired_upload_makes_no_dataset(platform, monkeypatch) -> None:
    user = sign_up(platform.auth_host)
    with api(platform.gateway_url, user["id_token"]) as client:
        made = upload(client, "late.jsonl", chat_line("q", "a").encode() + b"\n")
        for name, value in platform.emulator_env.items():
            monkeypatch.setenv(name, value)
        FirestoreMetadataStore.for_project(platform.project_id).update(f"uploads/{made['id']}", {"expires_at": 1})
        response = client.post("/v1/datasets", json={"upload_id": made["id"]})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "upload_id" and error["code"] == "upload_expired"
