"""API keys end to end: made with a signed-in session, used by the unmodified `openai` SDK, revoked."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import OpenAI

from runtune.api_keys import key_hash
from tests.datasets.builders import chat_line
from tests.e2e.jobs_support import wait_for
from tests.support import sign_up

pytestmark = pytest.mark.platform


def _session(platform, token: str) -> httpx.Client:
    return httpx.Client(base_url=platform.gateway_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _sdk(platform, key: str) -> OpenAI:
    return OpenAI(base_url=f"{platform.gateway_url}/v1", api_key=key, max_retries=0)


def _chat_jsonl(rows: int) -> bytes:
    return ("\n".join(chat_line(f"Which colour is number {i}?", "red") for i in range(rows)) + "\n").encode()


def test_a_key_works_for_the_sdk_until_it_is_revoked(platform) -> None:
    user = sign_up(platform.auth_host)
    with _session(platform, user["id_token"]) as session:
        made = session.post("/v1/api_keys", json={"name": "ci pipeline", "expires_in_days": 30})
        assert made.status_code == 200, made.text
        created = made.json()
        key = created["key"]
        assert key.startswith("rt-") and created["object"] == "api_key" and created["scopes"] == ["full"]
        assert key.startswith(created["prefix"]) and len(created["prefix"]) < 12
        assert created["expires_at"] - created["created_at"] == 30 * 86400

        sdk = _sdk(platform, key)
        file = sdk.files.create(file=("train.jsonl", _chat_jsonl(12), "application/x-ndjson"), purpose="fine-tune")
        job = sdk.fine_tuning.jobs.create(
            model="tiny-gemma-3-vision", training_file=file.id, metadata={"script": "succeed"}
        )
        assert sdk.fine_tuning.jobs.retrieve(job.id).id == job.id
        assert job.id in [item.id for item in sdk.fine_tuning.jobs.list(limit=5).data]

        # The listing never shows the secret, and the key cannot make or revoke keys itself.
        listed = session.get("/v1/api_keys").json()["data"]
        assert [item["id"] for item in listed] == [created["id"]]
        assert "key" not in listed[0] and "key_hash" not in listed[0]
        assert key not in session.get("/v1/api_keys").text
        by_key = httpx.post(
            f"{platform.gateway_url}/v1/api_keys",
            json={"name": "successor"},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert by_key.status_code == 403 and by_key.json()["error"]["code"] == "session_required"

        assert session.delete(f"/v1/api_keys/{created['id']}").json()["deleted"] is True
        with pytest.raises(openai.AuthenticationError) as refused:
            sdk.fine_tuning.jobs.retrieve(job.id)
        assert refused.value.body["code"] == "invalid_api_key"
        assert session.get(f"/v1/api_keys/{created['id']}").status_code == 404
        wait_for(lambda: session.get(f"/v1/fine_tuning/jobs/{job.id}").json()["status"] == "succeeded")


def test_a_read_only_key_reads_but_cannot_create_a_job(platform) -> None:
    user = sign_up(platform.auth_host)
    with _session(platform, user["id_token"]) as session:
        created = session.post("/v1/api_keys", json={"name": "dashboard", "scopes": ["read_only"]}).json()
    sdk = _sdk(platform, created["key"])
    assert sdk.fine_tuning.jobs.list(limit=5).data == []
    with pytest.raises(openai.PermissionDeniedError) as refused:
        sdk.fine_tuning.jobs.create(model="tiny-gemma-3-vision", training_file="file-whatever")
    assert refused.value.body["code"] == "insufficient_scope"


def test_keys_are_private_to_their_owner_and_stored_as_a_hash_only(platform, monkeypatch) -> None:
    from runtune.adapters.firestore import FirestoreMetadataStore

    owner, other = sign_up(platform.auth_host), sign_up(platform.auth_host)
    with _session(platform, owner["id_token"]) as session:
        created = session.post("/v1/api_keys", json={"name": "backend"}).json()
    with _session(platform, other["id_token"]) as session:
        assert session.get(f"/v1/api_keys/{created['id']}").status_code == 404
        assert session.delete(f"/v1/api_keys/{created['id']}").status_code == 404
        assert session.get("/v1/api_keys").json()["data"] == []
        bad = session.post("/v1/api_keys", json={"name": "", "scopes": ["admin"]})
        assert bad.status_code == 400 and bad.json()["error"]["param"] in ("name", "scopes", "scopes.0")

    for name, value in platform.emulator_env.items():
        monkeypatch.setenv(name, value)
    stored = FirestoreMetadataStore.for_project(platform.project_id).get(f"api_keys/{created['id']}")
    assert stored is not None and stored["key_hash"] == key_hash(created["key"])
    assert created["key"] not in str(stored)
    # A key that is unknown (or was never issued) is a 401 with the envelope.
    forged = httpx.get(
        f"{platform.gateway_url}/v1/fine_tuning/jobs", headers={"Authorization": "Bearer rt-" + "x" * 43}
    )
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "invalid_api_key"
