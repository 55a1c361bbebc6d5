"""Tenant isolation and the OpenAI files surface, through the gateway."""

from __future__ import annotations

import openai
import pytest

from tests.datasets.builders import chat_line, image_folder_files, jpeg, write_zip
from tests.datasets.client import api, assert_not_found, ingest, upload, wait
from tests.support import sign_up

pytestmark = pytest.mark.platform


@pytest.fixture(scope="module")
def owner(platform) -> dict[str, str]:
    return sign_up(platform.auth_host)


@pytest.fixture(scope="module")
def intruder(platform) -> dict[str, str]:
    return sign_up(platform.auth_host)


def test_another_users_dataset_and_upload_are_404_everywhere(platform, owner, intruder, tmp_path) -> None:
    with api(platform.gateway_url, owner["id_token"]) as mine:
        dataset = ingest(mine, "p.zip", write_zip(tmp_path / "p.zip", image_folder_files(4)).read_bytes())
        assert dataset["status"] == "ready"
        pending = upload(mine, "other.jsonl", (chat_line("q", "a") + "\n").encode())
    with api(platform.gateway_url, intruder["id_token"]) as theirs:
        ds = dataset["id"]
        calls = [
            ("GET", f"/v1/datasets/{ds}"),
            ("GET", f"/v1/datasets/{ds}/samples"),
            ("GET", f"/v1/datasets/{ds}/stats"),
            ("GET", f"/v1/datasets/{ds}/download"),
            ("GET", f"/v1/files/{ds}"),
            ("GET", f"/v1/files/{ds}/content"),
            ("GET", f"/v1/datasets?after={ds}"),
            ("DELETE", f"/v1/datasets/{ds}"),
            ("DELETE", f"/v1/files/{ds}"),
            ("GET", f"/v1/uploads/{pending['id']}"),
            ("POST", f"/v1/uploads/{pending['id']}/complete"),
            ("DELETE", f"/v1/uploads/{pending['id']}"),
        ]
        assert_not_found(theirs, calls)
        # Nor can a dataset be pointed at the owner's upload (the object path is never taken from a client).
        response = theirs.post("/v1/datasets", json={"upload_id": pending["id"]})
        assert response.status_code == 404
        response = theirs.post(
            "/v1/datasets",
            json={"upload_id": pending["id"], "object_path": f"uploads/{owner['uid']}/{pending['id']}/x"},
        )
        assert response.status_code == 400
        assert theirs.get("/v1/datasets").json()["data"] == []
        assert theirs.get("/v1/uploads").json()["data"] == []
    with api(platform.gateway_url, owner["id_token"]) as mine:
        assert mine.get(f"/v1/datasets/{ds}").json()["status"] == "ready"
        assert mine.get(f"/v1/uploads/{pending['id']}").status_code == 200


def test_an_archive_cannot_read_other_users_objects_by_path(platform, owner, intruder, tmp_path) -> None:
    with api(platform.gateway_url, intruder["id_token"]) as theirs:
        table = f"image,label\nuploads/{owner['uid']}/x/img.jpg,a\nmine.jpg,b\n".encode()
        data = write_zip(tmp_path / "g.zip", {"t.csv": table, "mine.jpg": jpeg((1, 1, 1))}).read_bytes()
        dataset = ingest(theirs, "g.zip", data)
        assert dataset["status"] == "failed"
        assert dataset["error"]["code"] == "image_not_found"
        assert "g.zip!t.csv, row 1, field 'image'" in dataset["error"]["message"]


def test_openai_sdk_files_calls_work_unchanged(platform, owner) -> None:
    client = openai.OpenAI(base_url=f"{platform.gateway_url}/v1", api_key=owner["id_token"], max_retries=0)
    body = "\n".join(chat_line(f"Which colour is {i}?", "red", jpeg((200, 0, 0), seed=i)) for i in range(5)) + "\n"
    created = client.files.create(file=("train.jsonl", body.encode(), "application/x-ndjson"), purpose="fine-tune")
    assert (created.object, created.filename, created.purpose) == ("file", "train.jsonl", "fine-tune")
    assert created.bytes == len(body.encode()) and created.status == "uploaded"
    with api(platform.gateway_url, owner["id_token"]) as http:
        dataset = wait(http, created.id)
    assert dataset["status"] == "ready" and dataset["modality"] == "vision"
    retrieved = client.files.retrieve(created.id)
    assert retrieved.status == "processed"
    assert created.id in [f.id for f in client.files.list()]
    assert client.files.content(created.id).content == body.encode()
    deleted = client.files.delete(created.id)
    assert deleted.deleted is True and deleted.id == created.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)
    with pytest.raises(openai.BadRequestError):
        client.files.create(file=("x.jsonl", b"{}\n"), purpose="assistants")
