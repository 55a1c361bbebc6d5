"""Every Firestore query the services run through their flows is served by a declared index, and the
TTL fields are written as Timestamps (real Firestore refuses the first and ignores anything else)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from runtune.indexes import COMPOSITE_INDEXES, TTL_POLICIES, QueryShape, needs_composite, uncovered
from tests.datasets.builders import chat_line
from tests.datasets.client import api, ingest, upload
from tests.e2e.conftest import QUERY_LOG
from tests.e2e.jobs_support import job_status, put_dataset, wait_for
from tests.support import sign_up

MODEL = "tiny-gemma-3-vision"


def _recorded(platform) -> set[QueryShape]:
    path = Path(platform.local_dir) / QUERY_LOG
    return {QueryShape.from_json(line) for line in path.read_text().splitlines() if line}


@pytest.fixture(scope="module")
def flows(platform) -> dict[str, str]:
    """Drive every listing with and without a cursor, a dataset from an upload and a job with its key."""
    user = sign_up(platform.auth_host)
    with api(platform.gateway_url, user["id_token"]) as client:
        first = ingest(client, "a.jsonl", chat_line("q", "a").encode() + b"\n")
        ingest(client, "b.jsonl", chat_line("q", "b").encode() + b"\n")
        pending = upload(client, "c.jsonl", chat_line("q", "c").encode() + b"\n")
        dataset_id = put_dataset(platform, user["uid"])
        body = {"model": MODEL, "training_file": dataset_id, "metadata": {"script": "succeed"}}
        created = client.post("/v1/fine_tuning/jobs", json=body, headers={"idempotency-key": "coverage-1"})
        assert created.status_code == 200, created.text
        job = created.json()
        wait_for(lambda: job_status(client, job["id"]) == "succeeded", timeout_s=120)
        cursors = {"/v1/datasets": first["id"], "/v1/files": first["id"], "/v1/uploads": pending["id"]}
        cursors["/v1/fine_tuning/jobs"] = job["id"]
        for path in ("/v1/evaluations", "/v1/exports", "/v1/vibe_checks", *cursors):
            assert client.get(path, params={"limit": 1}).status_code == 200, path
        for path, cursor in cursors.items():
            assert client.get(path, params={"limit": 1, "after": cursor}).status_code == 200, path
        for sub in ("events", "checkpoints"):
            response = client.get(f"/v1/fine_tuning/jobs/{job['id']}/{sub}", params={"limit": 2})
            assert response.status_code == 200, sub
            listed = response.json()["data"]
            if listed:
                after = client.get(
                    f"/v1/fine_tuning/jobs/{job['id']}/{sub}", params={"limit": 2, "after": listed[-1]["id"]}
                )
                assert after.status_code == 200, after.text
    return {"uid": user["uid"]}


def test_every_recorded_query_shape_has_its_index(platform, flows) -> None:
    recorded = _recorded(platform)
    collections = {shape.collection for shape in recorded}
    wanted = {"datasets", "uploads", "jobs", "events", "model_checkpoints", "evaluations", "exports", "vibe_checks"}
    assert wanted <= collections, wanted - collections
    problems = [reason for shape in recorded if (reason := uncovered(shape))]
    assert problems == []
    # The flows do exercise composite indexes, so a dropped declaration would be caught.
    composite = [shape for shape in recorded if needs_composite(shape)]
    assert {shape.collection for shape in composite} >= {"uploads", "vibe_checks", "jobs", "datasets"}
    without_uploads = [index for index in COMPOSITE_INDEXES if index.collection != "uploads"]
    assert any(uncovered(shape, without_uploads) for shape in composite)


def test_ttl_fields_are_written_as_timestamps_where_the_policies_say(platform, flows, monkeypatch) -> None:
    for name, value in platform.emulator_env.items():
        monkeypatch.setenv(name, value)
    db = firestore.Client(project=platform.project_id)
    ttl_names = set(TTL_POLICIES.values())
    timestamped: dict[str, set[str]] = {}
    for collection in db.collections():
        for snapshot in collection.limit(200).stream():
            for field, value in (snapshot.to_dict() or {}).items():
                if field in ttl_names and isinstance(value, datetime):
                    timestamped.setdefault(collection.id, set()).add(field)
    assert timestamped == {collection: {field} for collection, field in TTL_POLICIES.items()}
    for collection, field in TTL_POLICIES.items():
        mine = list(db.collection(collection).where(filter=FieldFilter("owner", "==", flows["uid"])).stream())
        assert mine, collection
        assert all(isinstance(snapshot.get(field), datetime) for snapshot in mine), collection
