"""The real trainer (`python -m jobs.trainer`) launched by the jobs API through the gateway, on a tiny
Gemma 3 vision model and the demo set: SSE to `succeeded`, metrics and checkpoints, then continued
and DPO jobs on its model; a cancel mid-run;
and a trainer killed with SIGKILL that the reconciler fails with the reason."""

from __future__ import annotations

import json
import os
import signal

import httpx
import pytest
from openai import OpenAI

from tests.e2e.continued import check_continues
from tests.e2e.jobs_support import job_status, put_demo_dataset, supervised_method, trainer_pids, wait_for
from tests.e2e.preference_chain import check_prefers
from tests.support import sign_up

pytestmark = pytest.mark.platform

SMALL = {"train": 48, "validation": 8, "test": 16}
FAST = supervised_method(1, 4, checkpoint_every_steps=4)


@pytest.fixture
def client(platform):
    user = sign_up(platform.auth_host)
    with httpx.Client(
        base_url=platform.gateway_url, headers={"authorization": f"Bearer {user['id_token']}"}, timeout=30
    ) as client:
        client.uid = user["uid"]  # type: ignore[attr-defined]
        client.token = user["id_token"]  # type: ignore[attr-defined]
        yield client


# Three trainer runs (supervised, continued, DPO) and an evaluation: 37 to 147 s seen, the longest
# on a loaded 2-core machine, so more than the default 300 s limit is allowed.
@pytest.mark.timeout(900)
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
    done = client.get(f"/v1/fine_tuning/jobs/{job_id}").json()
    assert done["fine_tuned_model"] and done["steps_completed"] == done["total_steps"] == 12

    # One epoch: one model checkpoint, the final step's (the resume states at steps 4 and 8 are not
    # models), with the validation split's loss and accuracy, marked best; the `openai` SDK parses it
    # and a chat completion on its id answers.
    sdk = OpenAI(base_url=f"{platform.gateway_url}/v1", api_key=client.token, max_retries=0)
    checkpoints = sdk.fine_tuning.jobs.checkpoints.list(job_id).data
    assert [c.step_number for c in checkpoints] == [12]
    checkpoint = checkpoints[0]
    assert checkpoint.fine_tuned_model_checkpoint == f"{done['fine_tuned_model']}:ckpt-step-12"
    assert checkpoint.metrics.train_loss > 0 and 0 <= checkpoint.metrics.train_mean_token_accuracy <= 1
    assert checkpoint.metrics.valid_loss > 0 and 0 <= checkpoint.metrics.valid_mean_token_accuracy <= 1
    assert checkpoint.model_extra["best"] is True and done["best_checkpoint"] == checkpoint.fine_tuned_model_checkpoint
    answer = sdk.chat.completions.create(
        model=checkpoint.fine_tuned_model_checkpoint,
        messages=[{"role": "user", "content": "What shape is this?"}],
        max_tokens=4,
        temperature=0,
    )
    assert answer.model == checkpoint.fine_tuned_model_checkpoint and answer.choices[0].message.content is not None
    assert sdk.models.retrieve(checkpoint.fine_tuned_model_checkpoint).id == checkpoint.fine_tuned_model_checkpoint
    # Validation points in the metrics events at intervals (every 2 of the 12 steps).
    points = client.get(f"/v1/fine_tuning/jobs/{job_id}/metrics").json()["data"]
    assert [p["step"] for p in points if "valid_loss" in p] == [2, 4, 6, 8, 10, 12]
    assert all(0 <= p["token_accuracy"] <= 1 for p in points)

    # Continued fine-tuning on this job's model (here rather than in a test of its own: it saves a
    # whole trainer run): tests/e2e/continued.py.
    check_continues(platform, sdk, client.uid, done["fine_tuned_model"], [p["loss"] for p in points])
    # And OpenAI's recipe, DPO on this supervised model: tests/e2e/preference_chain.py.
    check_prefers(platform, sdk, client.uid, done["fine_tuned_model"])


def _long_job(platform, client) -> str:
    """A real job long enough to be caught running (5 epochs of 400 examples at batch 2), created."""
    dataset_id = put_demo_dataset(platform, client.uid, {"train": 400, "validation": 8, "test": 8})
    method = supervised_method(5, 2, checkpoint_every_steps=4)
    body = {"model": "tiny-gemma-3-vision", "training_file": dataset_id, "method": method}
    return client.post("/v1/fine_tuning/jobs", json=body).json()["id"]


def test_real_job_cancelled_mid_run(platform, client) -> None:
    job_id = _long_job(platform, client)
    wait_for(lambda: client.get(f"/v1/fine_tuning/jobs/{job_id}").json().get("steps_completed", 0) > 0, timeout_s=180)
    assert client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel").status_code == 200
    wait_for(lambda: job_status(client, job_id) == "cancelled", timeout_s=120)
    wait_for(lambda: not trainer_pids(job_id), timeout_s=60)


def test_killed_trainer_is_failed_by_the_reconciler(platform, client) -> None:
    job_id = _long_job(platform, client)
    wait_for(lambda: job_status(client, job_id) == "running", timeout_s=180)
    pid = wait_for(lambda: trainer_pids(job_id), timeout_s=30)[0]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: job_status(client, job_id) == "failed", timeout_s=60)
    error = client.get(f"/v1/fine_tuning/jobs/{job_id}").json()["error"]
    assert error["code"] == "trainer_exited" and "SIGKILL" in error["message"]
