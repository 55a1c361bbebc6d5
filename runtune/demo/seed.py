"""The demo content the local platform offers a new install: the shapes set in the demo account.

It goes in through the public API, as a user's upload would (upload session, direct content,
dataset creation), so the demo dataset has the stats, samples and splits any upload gets and shows
the preprocessing path working on first start.
"""

from __future__ import annotations

import io

import httpx

from runtune.demo.shapes import write_archive

DEMO_DATASET_NAME = "demo shapes"
ARCHIVE_NAME = "demo-shapes.zip"


class DemoSeedError(RuntimeError):
    pass


def ensure_demo_dataset(gateway_url: str, id_token: str, *, timeout_s: float = 60) -> str:
    """The id of the caller's demo dataset, uploading it first when the account has none.

    Processing runs in the background: the dataset may still be `processing` when this returns.
    """
    headers = {"authorization": f"Bearer {id_token}"}
    with httpx.Client(base_url=gateway_url, headers=headers, timeout=timeout_s) as client:
        existing = _call(client, "GET", "/v1/datasets", params={"limit": 100})
        for dataset in existing["data"]:
            if dataset["name"] == DEMO_DATASET_NAME and dataset["status"] != "failed":
                return str(dataset["id"])
        buffer = io.BytesIO()
        write_archive(buffer)
        archive = buffer.getvalue()
        upload = _call(
            client,
            "POST",
            "/v1/uploads",
            json={"filename": ARCHIVE_NAME, "bytes": len(archive), "mime_type": "application/zip"},
        )
        _call(client, "POST", f"/v1/uploads/{upload['id']}/content", files={"file": (ARCHIVE_NAME, archive)})
        created = _call(client, "POST", "/v1/datasets", json={"upload_id": upload["id"], "name": DEMO_DATASET_NAME})
        return str(created["id"])


def _call(client: httpx.Client, method: str, path: str, **kwargs: object) -> dict:
    response = client.request(method, path, **kwargs)  # type: ignore[arg-type]
    if response.status_code >= 400:
        raise DemoSeedError(f"{method} {path} answered {response.status_code}: {response.text[:500]}")
    return response.json()
