"""The real trainer (`python -m jobs.trainer`) launched by the jobs API through the gateway, on a tiny
Gemma 3 vision model and the demo set: SSE to `succeeded`, metrics and checkpoints; a cancel mid-run;
and a trainer killed with SIGKILL that the reconciler fails with the reason."""

from __future__ import annotations

import json
import os
import signal

import httpx
import pytest

from tests.e2e.jobs_support import job_status, put_demo_dataset, trainer_pids, wait_for
from tests.support import sign_up

pytestmark = pytest.mark.platform

SMALL = {"train": 48, "validation": 8, "test": 16}
FAST = {
    "type": "supervised",
    "supervised": {
        "hyperparameters": {"n_epochs": 1, "batch_size": 4},
        "runtune": {"checkpoint_every_steps": 4, "export": {"merged": False}},
    },
}


@pytest.fixture
def client(platform):
    user = sign_up(platform.auth_host)
    with httpx.Client(
        base_url=platform.gateway_url, headers={"authorization": f"Bearer {user['id_token']}"}, timeout=30
    ) as client:
        client.uid = user["uid"]  # type: ignore[attr-defined]
        yield client


def test_real_job_streams_to_success(platform, client) -> None:
    dataset_id = put_demo_dataset(platform, client.uid, SMALL)
    job = client.post(
        "/v1/fine_tuning/jobs", json={"model": "tiny-gemma-3-vision", "training_file": dataset_id, "method": FAST}
    )
    assert job.status_code == 200, job.text
    job_id = job.json()["id"]
    kinds: list[str] = []
    final = None
    with client.stream(
        "GET", f"/v1/fine_tuning/jobs/{job_id}/events", headers={"accept": "text/event-stream"}, timeout=None
    ) as stream:
        kind = None
        for line in stream.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                if kind == "done":
                    final = json.loads(line[6:])["status"]
                    break
                kinds.append(kind or "message")
    assert final == "succeeded", client.get(f"/v1/fine_tuning/jobs/{job_id}").json()
    assert "metrics" in kinds
    checkpoints = client.get(f"/v1/fine_tuning/jobs/{job_id}/checkpoints").json()["data"]
    assert checkpoints and checkpoints[0]["fine_tuning_job_id"] == job_id
    done = client.get(f"/v1/fine_tuning/jobs/{job_id}").json()
    assert done["fine_tuned_model"] and done["steps_completed"] == done["total_steps"]


def test_real_job_cancelled_mid_run(platform, client) -> None:
    dataset_id = put_demo_dataset(platform, client.uid, {"train": 400, "validation": 8, "test": 8})
    method = {**FAST, "supervised": {**FAST["supervised"], "hyperparameters": {"n_epochs": 5, "batch_size": 2}}}
    job_id = client.post(
        "/v1/fine_tuning/jobs", json={"model": "tiny-gemma-3-vision", "training_file": dataset_id, "method": method}
    ).json()["id"]
    wait_for(lambda: client.get(f"/v1/fine_tuning/jobs/{job_id}").json().get("steps_completed", 0) > 0, timeout_s=180)
    assert client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel").status_code == 200
    wait_for(lambda: job_status(client, job_id) == "cancelled", timeout_s=120)
    wait_for(lambda: not trainer_pids(job_id), timeout_s=60)


def test_killed_trainer_is_failed_by_the_reconciler(platform, client) -> None:
    dataset_id = put_demo_dataset(platform, client.uid, {"train": 400, "validation": 8, "test": 8})
    method = {**FAST, "supervised": {**FAST["supervised"], "hyperparameters": {"n_epochs": 5, "batch_size": 2}}}
    job_id = client.post(
        "/v1/fine_tuning/jobs", json={"model": "tiny-gemma-3-vision", "training_file": dataset_id, "method": method}
    ).json()["id"]
    wait_for(lambda: job_status(client, job_id) == "running", timeout_s=180)
    pid = wait_for(lambda: trainer_pids(job_id), timeout_s=30)[0]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: job_status(client, job_id) == "failed", timeout_s=60)
    error = client.get(f"/v1/fine_tuning/jobs/{job_id}").json()["error"]
    assert error["code"] == "trainer_exited" and "SIGKILL" in error["message"]
