"""Driving the datasets API through the gateway, as a browser or the CLI would."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import httpx

from runtune.adapters.gcs import GcsBlobStore


def api(gateway_url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=gateway_url, headers={"authorization": f"Bearer {token}"}, timeout=60)


def assert_not_found(client: httpx.Client, calls: Iterable[tuple[str, str]]) -> None:
    """Each (method, path) is answered 404 with the `not_found` envelope: to another user a resource
    that is not theirs is the same as one that does not exist."""
    for method, path in calls:
        response = client.request(method, path)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["code"] == "not_found", (method, path, response.text)


def upload(client: httpx.Client, filename: str, data: bytes) -> dict[str, Any]:
    """Create a session, send the bytes to its resumable URL in one request, complete it."""
    response = client.post("/v1/uploads", json={"filename": filename, "bytes": len(data)})
    assert response.status_code == 200, response.text
    session = response.json()
    sent = httpx.put(
        session["upload_url"], content=data, headers={"content-range": f"bytes 0-{len(data) - 1}/{len(data)}"}
    )
    assert sent.status_code in (200, 201), sent.text
    done = client.post(f"/v1/uploads/{session['id']}/complete")
    assert done.status_code == 200, done.text
    return done.json()


def create(client: httpx.Client, upload_id: str, **options: Any) -> dict[str, Any]:
    response = client.post("/v1/datasets", json={"upload_id": upload_id, **options})
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "processing"
    return response.json()


def wait(client: httpx.Client, dataset_id: str, timeout_s: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        dataset = client.get(f"/v1/datasets/{dataset_id}").json()
        if dataset["status"] != "processing":
            return dataset
        time.sleep(0.2)
    raise AssertionError(f"dataset {dataset_id} still processing after {timeout_s}s")


def ingest(client: httpx.Client, filename: str, data: bytes, **options: Any) -> dict[str, Any]:
    return wait(client, create(client, upload(client, filename, data)["id"], **options)["id"])


def bucket(emulator_env: dict[str, str], monkeypatch) -> GcsBlobStore:
    for name, value in emulator_env.items():
        monkeypatch.setenv(name, value)
    return GcsBlobStore.for_bucket(emulator_env["RUNTUNE_PROJECT_ID"], emulator_env["RUNTUNE_BUCKET"])
