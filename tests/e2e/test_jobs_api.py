"""The fine-tuning jobs API through the gateway, with the scripted trainer (tests/e2e/scripted_trainer.py)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from runtune import serving
from runtune.schemas import DatasetStatus
from tests.datasets.client import api, assert_not_found
from tests.e2e.jobs_support import claimed_launch, job_status, put_dataset, wait_for
from tests.support import sign_up

pytestmark = pytest.mark.platform

MODEL = "tiny-gemma-3-vision"


def _create(client: httpx.Client, dataset_id: str, script: str, **extra) -> httpx.Response:
    body = {"model": MODEL, "training_file": dataset_id, "metadata": {"script": script}} | extra
    return client.post("/v1/fine_tuning/jobs", json=body)


def test_job_runs_to_success_with_events_metrics_and_a_checkpoint(platform, user, user_client) -> None:
    dataset_id = put_dataset(platform, user["uid"])
    created = _create(user_client, dataset_id, "succeed", suffix="pets")
    assert created.status_code == 200, created.text
    job = created.json()
    assert job["object"] == "fine_tuning.job" and job["status"] in ("queued", "running")
    assert job["training_file"] == dataset_id and job["model"] == MODEL
    wait_for(lambda: job_status(user_client, job["id"]) == "succeeded")

    done = user_client.get(f"/v1/fine_tuning/jobs/{job['id']}").json()
    assert done["fine_tuned_model"].startswith(f"ft:{MODEL}:")
    assert done["steps_completed"] == 6 and done["finished_at"]
    events = user_client.get(f"/v1/fine_tuning/jobs/{job['id']}/events", params={"limit": 100}).json()
    messages = [event["message"] for event in events["data"]]
    assert messages[0] == "The job has successfully completed"  # newest first, as OpenAI lists them
    assert "Job queued" in messages
    assert sum(event["type"] == "metrics" for event in events["data"]) == 6
    # A metrics event's data keeps every number the trainer reported (MetricsPoint is open), a
    # message event has none.
    third = {"step": 3, "train_loss": 2.0 / 3, "valid_loss": 2.5 / 3, "valid_token_accuracy": 3 / 10}
    assert [event["data"] for event in events["data"] if event["message"] == "step 3"] == [third]
    assert all(event["data"] is None for event in events["data"] if event["type"] == "message")
    # The job's method in OpenAI's shape (only its type's key), its estimate's summary whole.
    assert set(done["method"]) == {"type", "supervised"} and set(done["method"]["supervised"]) == {"hyperparameters"}
    assert set(done["estimate"]) == {
        *("seconds", "seconds_low", "seconds_high", "usd", "usd_low", "usd_high", "basis", "calibrated_runs"),
        *("machine", "compute", "gpu_count", "spot", "warnings"),
    }
    checkpoints = user_client.get(f"/v1/fine_tuning/jobs/{job['id']}/checkpoints").json()
    assert [c["step_number"] for c in checkpoints["data"]] == [3]
    metrics = user_client.get(f"/v1/fine_tuning/jobs/{job['id']}/metrics", params={"from_step": 2, "to_step": 4}).json()
    assert [point["step"] for point in metrics["data"]] == [2, 3, 4] and metrics["data"][1] == third
    assert set(metrics) == {"object", "data", "has_more"} and metrics["object"] == "list"
    # A page at a time: the next page starts after the last point's step.
    first = user_client.get(f"/v1/fine_tuning/jobs/{job['id']}/metrics", params={"limit": 4}).json()
    assert [point["step"] for point in first["data"]] == [1, 2, 3, 4] and first["has_more"] is True
    rest = user_client.get(f"/v1/fine_tuning/jobs/{job['id']}/metrics", params={"limit": 4, "after_step": 4}).json()
    assert [point["step"] for point in rest["data"]] == [5, 6] and rest["has_more"] is False


def test_events_stream_over_sse_and_resume_with_last_event_id(platform, user, user_client) -> None:
    dataset_id = put_dataset(platform, user["uid"])
    job_id = _create(user_client, dataset_id, "succeed").json()["id"]
    seen: list[dict] = []
    with user_client.stream(
        "GET", f"/v1/fine_tuning/jobs/{job_id}/events", headers={"accept": "text/event-stream"}
    ) as s:
        ids, kind = [], None
        for line in s.iter_lines():
            if line.startswith("id: "):
                ids.append(int(line[4:]))
            elif line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind != "done":
                seen.append(json.loads(line[6:]))
            elif line.startswith("data: ") and kind == "done":
                assert json.loads(line[6:]) == {"status": "succeeded"}
                break
    assert ids == sorted(ids) and len(ids) == len(set(ids)) == len(seen)
    assert seen[-1]["message"] == "The job has successfully completed"
    # Resume from the middle: exactly the later events, no repeats.
    middle = ids[len(ids) // 2]
    with user_client.stream(
        "GET",
        f"/v1/fine_tuning/jobs/{job_id}/events",
        headers={"accept": "text/event-stream", "last-event-id": str(middle)},
    ) as s:
        resumed = [int(line[4:]) for line in s.iter_lines() if line.startswith("id: ")]
    assert resumed == [i for i in ids if i > middle]


def test_cancel_a_running_job(platform, user, user_client) -> None:
    dataset_id = put_dataset(platform, user["uid"])
    job_id = _create(user_client, dataset_id, "slow").json()["id"]
    wait_for(lambda: user_client.get(f"/v1/fine_tuning/jobs/{job_id}").json()["steps_completed"] >= 2)
    cancelled = user_client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")
    assert cancelled.status_code == 200
    wait_for(lambda: job_status(user_client, job_id) == "cancelled")
    again = user_client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")
    assert again.status_code == 400 and again.json()["error"]["code"] == "job_finished"


def test_reconciler_fails_a_crashed_and_a_silent_trainer(platform, user, user_client) -> None:
    dataset_id = put_dataset(platform, user["uid"])
    crashed = _create(user_client, dataset_id, "crash").json()["id"]
    wait_for(lambda: job_status(user_client, crashed) == "failed", timeout_s=60)
    error = user_client.get(f"/v1/fine_tuning/jobs/{crashed}").json()["error"]
    assert error["code"] == "trainer_exited" and "exit code 3" in error["message"]

    silent = _create(user_client, dataset_id, "hang").json()["id"]
    wait_for(lambda: job_status(user_client, silent) == "running")
    # Alive but silent: given 4x the heartbeat allowance, then failed with the reason.
    wait_for(lambda: job_status(user_client, silent) == "failed", timeout_s=60)
    assert "stopped" in user_client.get(f"/v1/fine_tuning/jobs/{silent}").json()["error"]["message"]


def test_jobs_wait_their_turn_per_user(platform, user, user_client) -> None:
    dataset_id = put_dataset(platform, user["uid"])
    first = _create(user_client, dataset_id, "slow").json()["id"]
    second = _create(user_client, dataset_id, "succeed").json()["id"]
    wait_for(lambda: job_status(user_client, first) == "running")
    assert job_status(user_client, second) == "queued"  # the limit is one running job per user here
    user_client.post(f"/v1/fine_tuning/jobs/{first}/cancel")
    wait_for(lambda: job_status(user_client, second) == "succeeded", timeout_s=60)


def test_idempotency_key_returns_the_same_job(platform, user, user_client) -> None:
    dataset_id = put_dataset(platform, user["uid"])
    headers = {"idempotency-key": "retry-me-1"}
    body = {"model": MODEL, "training_file": dataset_id, "metadata": {"script": "succeed"}}
    first = user_client.post("/v1/fine_tuning/jobs", json=body, headers=headers).json()
    second = user_client.post("/v1/fine_tuning/jobs", json=body, headers=headers).json()
    assert first["id"] == second["id"]
    listed = user_client.get("/v1/fine_tuning/jobs", params={"limit": 100}).json()["data"]
    assert [job["id"] for job in listed].count(first["id"]) == 1


def test_concurrent_creates_with_one_idempotency_key_make_one_job(platform, user, user_client) -> None:
    dataset_id = put_dataset(platform, user["uid"])
    body = {"model": MODEL, "training_file": dataset_id, "metadata": {"script": "succeed"}}
    headers = {"authorization": user_client.headers["authorization"], "idempotency-key": "together-1"}

    def post(_: int) -> httpx.Response:
        with httpx.Client(base_url=platform.gateway_url, headers=headers, timeout=60) as own:
            return own.post("/v1/fine_tuning/jobs", json=body)

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(post, range(8)))
    assert [answer.status_code for answer in answers] == [200] * 8, [answer.text for answer in answers]
    assert len({answer.json()["id"] for answer in answers}) == 1
    listed = user_client.get("/v1/fine_tuning/jobs", params={"limit": 100}).json()["data"]
    assert len(listed) == 1


def test_a_job_cancelled_right_after_it_was_created_ends_cancelled(platform, user, user_client) -> None:
    dataset_id = put_dataset(platform, user["uid"])
    for script in ("slow", "succeed"):
        job_id = _create(user_client, dataset_id, script).json()["id"]
        assert user_client.post(f"/v1/fine_tuning/jobs/{job_id}/cancel").status_code == 200
        wait_for(lambda job_id=job_id: job_status(user_client, job_id) == "cancelled")
    # Nothing holds the user's slot: the next job runs.
    last = _create(user_client, dataset_id, "succeed").json()["id"]
    wait_for(lambda: job_status(user_client, last) == "succeeded")


def test_a_launch_claimed_but_never_stored_is_launched_again(platform, user, user_client) -> None:
    dataset_id = put_dataset(platform, user["uid"])
    job_id = claimed_launch(platform, user["uid"], dataset_id, attempts=1)
    wait_for(lambda: job_status(user_client, job_id) == "succeeded")
    events = user_client.get(f"/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 100}).json()["data"]
    assert "The launch was interrupted; launching again" in [event["message"] for event in events]

    other = sign_up(platform.auth_host)
    given_up = claimed_launch(platform, other["uid"], put_dataset(platform, other["uid"]), attempts=3)
    with httpx.Client(
        base_url=platform.gateway_url, headers={"authorization": f"Bearer {other['id_token']}"}, timeout=30
    ) as theirs:
        wait_for(lambda: job_status(theirs, given_up) == "failed")
        error = theirs.get(f"/v1/fine_tuning/jobs/{given_up}").json()["error"]
    assert error["code"] == "launch_failed" and "3 launches" in error["message"]


def test_list_paginates_and_filters_by_metadata(platform, user, user_client) -> None:
    dataset_id = put_dataset(platform, user["uid"])
    ids = [
        _create(user_client, dataset_id, "succeed", metadata={"script": "succeed", "batch": str(i % 2)}).json()["id"]
        for i in range(3)
    ]
    page = user_client.get("/v1/fine_tuning/jobs", params={"limit": 2}).json()
    assert page["object"] == "list" and page["has_more"] is True and len(page["data"]) == 2
    rest = user_client.get("/v1/fine_tuning/jobs", params={"limit": 2, "after": page["data"][-1]["id"]}).json()
    assert {job["id"] for job in page["data"] + rest["data"]} == set(ids)
    filtered = user_client.get("/v1/fine_tuning/jobs", params={"metadata[batch]": "1"}).json()["data"]
    assert [job["id"] for job in filtered] == [ids[1]]


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": "gpt-4o"}, "model"),
        (
            {"method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": -1}}}},
            "method.supervised.hyperparameters.n_epochs",
        ),
        (
            {"method": {"type": "supervised", "supervised": {"hyperparameters": {"learning_rate_multiplier": 1e9}}}},
            "method.supervised.hyperparameters.learning_rate_multiplier",
        ),
        ({"method": {"type": "reinforcement"}}, "method.type"),
        # A dpo job on a classification set (pairs are what it trains on).
        ({"method": {"type": "dpo"}}, "training_file"),
        ({"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0}}}}, "method.dpo.hyperparameters.beta"),
        ({"method": {"type": "dpo", "supervised": {}}}, "method"),
        (
            {"method": {"type": "supervised", "supervised": {"runtune": {"lora": {"rank": 100000}}}}},
            "method.supervised.runtune.lora.rank",
        ),
        ({"seed": -5}, "seed"),
    ],
)
def test_bad_requests_name_the_field(platform, user, user_client, change, param) -> None:
    dataset_id = put_dataset(platform, user["uid"])
    response = user_client.post("/v1/fine_tuning/jobs", json={"model": MODEL, "training_file": dataset_id} | change)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


def _runtune(**options) -> dict:
    return {"method": {"type": "supervised", "supervised": {"runtune": options}}}


def test_a_job_the_engine_could_not_serve_is_refused_before_it_launches(platform, user, user_client) -> None:
    """The serving contract (runtune/serving.json: vLLM's --max-lora-rank 64, no tower LoRA) holds at
    creation: nothing is stored or launched for a refused job."""
    limit = serving.load().max_lora_rank
    assert limit == 64, "the shipped contract serves ranks up to 64; this test asks for 128 and 64"
    dataset_id = put_dataset(platform, user["uid"])
    too_large = _create(user_client, dataset_id, "succeed", **_runtune(lora={"rank": 2 * limit}))
    assert too_large.status_code == 400, too_large.text
    error = too_large.json()["error"]
    assert error["param"] == "method.supervised.runtune.lora.rank" and error["code"] == "lora_rank_not_servable"
    assert "128" in error["message"] and "at most 64" in error["message"]
    tower = _create(user_client, dataset_id, "succeed", **_runtune(lora={"vision_tower": True}))
    assert tower.status_code == 400 and tower.json()["error"]["param"] == "method.supervised.runtune.lora.vision_tower"
    assert user_client.get("/v1/fine_tuning/jobs").json()["data"] == []

    accepted = _create(user_client, dataset_id, "succeed", **_runtune(lora={"rank": limit}))
    assert accepted.status_code == 200, accepted.text
    job_id = accepted.json()["id"]
    wait_for(lambda: job_status(user_client, job_id) == "succeeded")
    events = user_client.get(f"/v1/fine_tuning/jobs/{job_id}/events", params={"limit": 100}).json()["data"]
    assert not [event for event in events if event["level"] == "warn"], "a served job runs as asked"


def test_a_base_the_engine_does_not_serve_runs_for_download_only(platform, user, user_client) -> None:
    """The local engine serves the tiny models (the contract's local bases): another base trains only
    when it exports its merged model, and the job says so in its events."""
    unserved = "google/gemma-3-4b-it"
    assert unserved not in serving.load().local_base_models
    catalogue = {model["id"]: model for model in user_client.get("/v1/models").json()["data"]}
    assert catalogue[unserved]["served"] is False and catalogue[MODEL]["served"] is True
    dataset_id = put_dataset(platform, user["uid"])
    body = {"model": unserved, "training_file": dataset_id, "metadata": {"script": "succeed"}}
    refused = user_client.post("/v1/fine_tuning/jobs", json=body | _runtune(export={"merged": False}))
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "model" and refused.json()["error"]["code"] == "model_not_served"

    created = user_client.post("/v1/fine_tuning/jobs", json=body)
    assert created.status_code == 200, created.text
    events = user_client.get(f"/v1/fine_tuning/jobs/{created.json()['id']}/events", params={"limit": 100}).json()[
        "data"
    ]
    warnings = [event["message"] for event in events if event["level"] == "warn"]
    # Besides the plan's own warnings (a real model on this CPU, a missing Hub token): the download one, once.
    download = [warning for warning in warnings if "trained for download" in warning]
    assert len(download) == 1 and unserved in download[0]


def test_dataset_problems_are_4xx(platform, user, user_client) -> None:
    other = sign_up(platform.auth_host)
    foreign = put_dataset(platform, other["uid"])
    failed = put_dataset(platform, user["uid"], status=DatasetStatus.failed)
    missing = user_client.post("/v1/fine_tuning/jobs", json={"model": MODEL, "training_file": "file-nope"})
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "training_file"
    theirs = user_client.post("/v1/fine_tuning/jobs", json={"model": MODEL, "training_file": foreign})
    assert theirs.status_code == 404
    # A file still processing is accepted (the job waits in `validating_files`); one known bad is not.
    bad = user_client.post("/v1/fine_tuning/jobs", json={"model": MODEL, "training_file": failed})
    assert bad.status_code == 400, bad.text
    assert bad.json()["error"]["code"] == "invalid_training_file" and bad.json()["error"]["param"] == "training_file"
    text_model = user_client.post(
        "/v1/fine_tuning/jobs", json={"model": "tiny-gemma-3-text", "training_file": put_dataset(platform, user["uid"])}
    )
    assert text_model.status_code == 400 and text_model.json()["error"]["param"] == "model"
    malformed = user_client.post("/v1/fine_tuning/jobs", content=b"{nope", headers={"content-type": "application/json"})
    assert malformed.status_code == 400


def test_other_users_cannot_see_or_touch_a_job(platform, user, user_client) -> None:
    dataset_id = put_dataset(platform, user["uid"])
    job_id = _create(user_client, dataset_id, "succeed").json()["id"]
    intruder = sign_up(platform.auth_host)
    with api(platform.gateway_url, intruder["id_token"]) as other:
        job = f"/v1/fine_tuning/jobs/{job_id}"
        reads = ["", "/events", "/events?stream=true", "/checkpoints", "/metrics"]
        assert_not_found(other, [("GET", job + route) for route in reads] + [("POST", f"{job}/cancel")])
        assert job_id not in other.get("/v1/fine_tuning/jobs").text
