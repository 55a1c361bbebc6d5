"""Jobs never get stuck: a cancel at any moment ends `cancelled`, and a kill at any moment (the
trainer, the training service) ends every job terminal, with no trainer left running and no slot held
(the platform runs one job per user: the next job runs to the end only if the slot is free).

The scripted trainer (tests/e2e/scripted_trainer.py, `hold:<phase>`) holds a phase for as long as a
test needs, heartbeating and never reading the cancel flag: only the jobs API's stop of the
execution ends it, as for a trainer busy where it has no safe point. The real trainer's own stop
(SIGTERM during loading, training) is covered by tests/e2e/test_jobs_real_trainer.py and
tests/trainer; a launch claimed but never stored (the service killed in between) by
tests/e2e/test_jobs_api.py::test_a_launch_claimed_but_never_stored_is_launched_again.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.jobs_support import claimed_launch, job_status, put_dataset, trainer_pids, wait_for
from tests.support import sign_up

pytestmark = pytest.mark.platform

MODEL = "tiny-gemma-3-vision"
PHASES = ["loading_model", "preparing_data", "training", "evaluating", "exporting"]


@pytest.fixture
def client(platform) -> Iterator[httpx.Client]:
    user = sign_up(platform.auth_host)
    with httpx.Client(
        base_url=platform.gateway_url, headers={"authorization": f"Bearer {user['id_token']}"}, timeout=30
    ) as client:
        client.uid = user["uid"]  # type: ignore[attr-defined]
        yield client


def _create(client: httpx.Client, dataset_id: str, script: str) -> str:
    body = {"model": MODEL, "training_file": dataset_id, "metadata": {"script": script}}
    created = client.post("/v1/fine_tuning/jobs", json=body)
    assert created.status_code == 200, created.text
    return created.json()["id"]


def _job(client: httpx.Client, job_id: str) -> dict:
    return client.get(f"/v1/fine_tuning/jobs/{job_id}").json()


def _cancel(client: httpx.Client, job_id: str) -> None:
    answer = client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")
    assert answer.status_code == 200, answer.text


def _nothing_left(client: httpx.Client, dataset_id: str, *job_ids: str) -> None:
    """No trainer of these jobs still runs, and the user's slot is free: their next job runs to the end."""
    for job_id in job_ids:
        wait_for(lambda job_id=job_id: not trainer_pids(job_id), timeout_s=60)
    following = _create(client, dataset_id, "succeed")
    wait_for(lambda: job_status(client, following) == "succeeded", timeout_s=120)


@pytest.mark.parametrize("phase", PHASES)
def test_a_cancel_in_each_phase_ends_cancelled_with_nothing_left(platform, client, phase: str) -> None:
    dataset_id = put_dataset(platform, client.uid)
    job_id = _create(client, dataset_id, f"hold:{phase}")
    wait_for(lambda: (_job(client, job_id)["status"], _job(client, job_id)["phase"]) == ("running", phase))
    assert trainer_pids(job_id)
    _cancel(client, job_id)
    wait_for(lambda: job_status(client, job_id) == "cancelled", timeout_s=60)
    _nothing_left(client, dataset_id, job_id)
    assert job_status(client, job_id) == "cancelled"  # and it stays so


def test_a_cancel_right_after_create_or_during_the_launch_claim_ends_cancelled(platform, client) -> None:
    dataset_id = put_dataset(platform, client.uid)
    created = _create(client, dataset_id, "hold:training")
    _cancel(client, created)
    # A launch under way (claimed a moment ago, no execution stored yet): cancelled at once (the
    # launch, when it stores its execution, finds the cancel and stops what it started).
    launching = claimed_launch(platform, client.uid, dataset_id, attempts=1, claimed_s_ago=0, script="hold:training")
    _cancel(client, launching)
    for job_id in (created, launching):
        wait_for(lambda job_id=job_id: job_status(client, job_id) == "cancelled", timeout_s=60)
    _nothing_left(client, dataset_id, created, launching)


def test_a_killed_training_service_and_trainer_leave_no_job_stuck(platform, client, training_service) -> None:
    dataset_id = put_dataset(platform, client.uid)
    running = _create(client, dataset_id, "hold:training")
    waiting = _create(client, dataset_id, "succeed")  # queued behind it: one job per user
    wait_for(lambda: job_status(client, running) == "running")
    assert job_status(client, waiting) == "queued"

    training_service.kill_and_restart()
    # The execution outlives its service, as a Cloud Run job's does; then it is killed too, with
    # nobody left who launched it: the restarted service's reconciler ends the job all the same.
    orphans = trainer_pids(running)
    assert orphans, "the trainer did not outlive its service"
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: job_status(client, running) == "failed", timeout_s=120)
    assert "stopped" in _job(client, running)["error"]["message"]
    # The slot it held is free again: the waiting job is launched by the new service and succeeds.
    wait_for(lambda: job_status(client, waiting) == "succeeded", timeout_s=120)
    wait_for(lambda: not trainer_pids(running) and not trainer_pids(waiting), timeout_s=60)  # exited, not lingering
