"""Per-user quotas and fair ingestion, through the gateway with real users: a user over a limit is
refused with the limit named (429, or 400 when the request alone is over it), while another user's
work goes on; one user's queue of datasets never holds another user's dataset back.

A platform of its own, with small limits (the shared one keeps the defaults the other tests rely on).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runtune.adapters.firestore import FirestoreMetadataStore
from runtune.schemas.common import new_id, now_ts
from runtune.schemas.inference import Evaluation, EvaluationStatus
from tests.datasets.builders import chat_line
from tests.datasets.client import api, create, upload, wait
from tests.e2e.jobs_support import put_dataset, wait_for
from tests.support import StartedPlatform, sign_up, started_platform

pytestmark = pytest.mark.platform

MODEL = "tiny-gemma-3-vision"
# A tiny model's run is estimated at about 110 GPU seconds on an L4 (pull, start, train, export):
# one fits this budget (180 s), two do not.
BUDGET_GPU_HOURS = 0.05
LIMITS = {
    "RUNTUNE_QUOTA_PROCESSING_DATASETS": "3",
    "RUNTUNE_QUOTA_STORED_BYTES": "1000000",
    "RUNTUNE_QUOTA_OPEN_STREAMS": "1",
    "RUNTUNE_QUOTA_RUNNING_EVALUATIONS": "1",
    "RUNTUNE_QUOTA_MONTHLY_GPU_HOURS": str(BUDGET_GPU_HOURS),
    # Two ingestion slots for everyone: the fairness test fills them with one user's datasets.
    "RUNTUNE_LOCAL_MAX_CONCURRENT_CPU_JOBS": "2",
}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartedPlatform]:
    with started_platform(
        tmp_path_factory.mktemp("quota-platform"),
        "demo-runtune-quotas",
        demo_content=False,
        service_env={
            **LIMITS,
            "RUNTUNE_TRAINER_COMMAND": json.dumps([sys.executable, "-m", "tests.e2e.scripted_trainer"]),
            "RUNTUNE_INGEST_COMMAND": json.dumps([sys.executable, "-m", "tests.e2e.scripted_ingest"]),
            "RUNTUNE_RECONCILE_EVERY_S": "1",
        },
    ) as (_, started):
        yield started


def client_for(platform: StartedPlatform) -> httpx.Client:
    user = sign_up(platform.auth_host)
    client = api(platform.url, user["id_token"])
    client.uid = user["uid"]  # type: ignore[attr-defined]
    return client


def refused(response: httpx.Response, status: int, param: str, code: str = "quota_exceeded") -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code), error
    return error


def chat_file(rows: int) -> bytes:
    return ("\n".join(chat_line(f"question {i}", f"answer {i}") for i in range(rows)) + "\n").encode()


def test_datasets_processing_are_bounded_and_ingestion_takes_turns_across_users(platform) -> None:
    greedy, modest = client_for(platform), client_for(platform)
    with greedy, modest:
        # The greedy user's first two hold both ingestion slots (held mid-way: tests/e2e/scripted_ingest.py)...
        held = [create(greedy, upload(greedy, f"h{i}.jsonl", chat_file(50))["id"], name=f"hold-{i}") for i in range(2)]
        wait_for(lambda: all((progress(greedy, d["id"]) or {}).get("done") for d in held), timeout_s=120)
        # ... the third waits its turn, and a fourth is over the limit.
        queued = create(greedy, upload(greedy, "q.jsonl", chat_file(3))["id"])
        over = greedy.post("/v1/datasets", json={"upload_id": upload(greedy, "o.jsonl", chat_file(3))["id"]})
        error = refused(over, 429, "quota_processing_datasets")
        assert (
            "You have 3 datasets processing" in error["message"] and "quota_processing_datasets = 3" in error["message"]
        )

        # Another user is not refused; their dataset (held too, once started) waits for a slot.
        theirs = create(modest, upload(modest, "t.jsonl", chat_file(50))["id"], name="hold-theirs")
        # A slot frees: the turn goes to the user with nothing running, ahead of the greedy user's queue.
        assert greedy.delete(f"/v1/datasets/{held[0]['id']}").status_code == 200
        wait_for(lambda: (progress(modest, theirs["id"]) or {}).get("done"), timeout_s=120)
        # Both slots are held again; the greedy user's dataset waited all along, and waiting (well past
        # the check of quiet executions) is not a failure.
        waiting = greedy.get(f"/v1/datasets/{queued['id']}").json()
        assert waiting["status"] == "processing" and waiting["progress"]["phase"] == "queued", waiting

        # The slots free: the greedy user's queue moves on, and its dataset ends ready (not interrupted).
        assert modest.delete(f"/v1/datasets/{theirs['id']}").status_code == 200
        assert greedy.delete(f"/v1/datasets/{held[1]['id']}").status_code == 200
        assert wait(greedy, queued["id"], timeout_s=120)["status"] == "ready"


def progress(client: httpx.Client, dataset_id: str) -> dict[str, Any] | None:
    return client.get(f"/v1/datasets/{dataset_id}").json().get("progress")


def test_stored_bytes_are_bounded_per_user(platform) -> None:
    mine, theirs = client_for(platform), client_for(platform)
    with mine, theirs:
        alone = mine.post("/v1/uploads", json={"filename": "big.jsonl", "bytes": 2_000_000})
        assert "quota_stored_bytes" in refused(alone, 400, "quota_stored_bytes")["message"]
        # Declared uploads count from their creation (their bytes are reserved until they expire).
        assert mine.post("/v1/uploads", json={"filename": "a.jsonl", "bytes": 600_000}).status_code == 200
        second = mine.post("/v1/uploads", json={"filename": "b.jsonl", "bytes": 600_000})
        error = refused(second, 429, "quota_stored_bytes")
        assert "You store 600,000 bytes" in error["message"] and "1,000,000" in error["message"]
        assert theirs.post("/v1/uploads", json={"filename": "b.jsonl", "bytes": 600_000}).status_code == 200


def job(client: httpx.Client, platform: StartedPlatform, script: str) -> httpx.Response:
    body = {"model": MODEL, "training_file": put_dataset(platform, client.uid), "metadata": {"script": script}}  # type: ignore[attr-defined]
    return client.post("/v1/fine_tuning/jobs", json=body)


def test_the_monthly_gpu_budget_is_checked_against_the_estimate(platform) -> None:
    mine, theirs = client_for(platform), client_for(platform)
    with mine, theirs:
        first = job(mine, platform, "succeed")
        assert first.status_code == 200, first.text
        estimated = first.json()["estimated_gpu_seconds"]
        assert BUDGET_GPU_HOURS * 3600 / 2 < estimated <= BUDGET_GPU_HOURS * 3600  # the premise above
        error = refused(job(mine, platform, "succeed"), 429, "quota_monthly_gpu_hours", "budget_exceeded")
        assert f"{estimated / 3600:.2f} GPU hours" in error["message"]
        assert f"monthly budget of {BUDGET_GPU_HOURS:g} GPU hours" in error["message"]
        assert len(mine.get("/v1/fine_tuning/jobs").json()["data"]) == 1
        assert job(theirs, platform, "succeed").status_code == 200


def test_open_event_streams_are_bounded_per_user(platform) -> None:
    mine, theirs = client_for(platform), client_for(platform)
    with mine, theirs:
        my_job, their_job = (job(client, platform, "hang").json()["id"] for client in (mine, theirs))
        events = f"/v1/fine_tuning/jobs/{my_job}/events?stream=true"
        with mine.stream("GET", events) as first:
            assert first.status_code == 200
            # Kept: an iterator dropped half-way closes its connection, and with it the stream.
            chunks = first.iter_bytes()
            next(chunks)  # the stream is open and sending
            error = refused(mine.get(events), 429, "quota_open_streams")
            assert "quota_open_streams = 1" in error["message"]
            with theirs.stream("GET", f"/v1/fine_tuning/jobs/{their_job}/events?stream=true") as other:
                assert other.status_code == 200
        # Closed by the client: its slot is free again once the service notices (within a poll).
        reopened = wait_for(lambda: _opens(mine, events), timeout_s=30)
        assert reopened == 200
        for client, job_id in ((mine, my_job), (theirs, their_job)):
            client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")


def _opens(client: httpx.Client, path: str) -> int | None:
    with client.stream("GET", path) as response:
        return response.status_code if response.status_code == 200 else None


def test_evaluations_at_once_are_bounded_per_user(platform, monkeypatch) -> None:
    mine, theirs = client_for(platform), client_for(platform)
    with mine, theirs:
        # One of the user's evaluations is running (its execution beats: the sweep leaves it alone).
        for name, value in platform.emulator_env.items():
            monkeypatch.setenv(name, value)
        running = Evaluation(
            id=new_id("eval"),
            owner=mine.uid,  # type: ignore[attr-defined]
            dataset_id="file-x",
            models=[MODEL],
            status=EvaluationStatus.running,
            heartbeat_at=now_ts() + 3600,
        )
        FirestoreMetadataStore.for_project(platform.project_id).set(f"evaluations/{running.id}", running.to_document())
        body = {"models": [MODEL], "max_samples": 2}
        mine_now = mine.post("/v1/evaluations", json=body | {"dataset_id": put_dataset(platform, mine.uid)})  # type: ignore[attr-defined]
        error = refused(mine_now, 429, "quota_running_evaluations")
        assert "You have 1 unfinished evaluation," in error["message"]
        theirs_now = theirs.post("/v1/evaluations", json=body | {"dataset_id": put_dataset(platform, theirs.uid)})  # type: ignore[attr-defined]
        assert theirs_now.status_code == 202, theirs_now.text
