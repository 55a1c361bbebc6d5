"""Webhooks end to end: an endpoint registered with a signed-in session, a job's terminal transition
delivered through the queue (the Cloud Tasks emulator) to a receiver on this machine, verified with
`openai`'s `client.webhooks.unwrap`; retried while the receiver fails; delivered after the training
service was killed (the outbox); refused for private and metadata addresses."""

from __future__ import annotations

import json

import httpx
import pytest
from openai import OpenAI

from runtune.outbox import event_id, outbox_path
from runtune.schemas import DatasetStatus
from runtune.schemas.jobs import JobStatus
from tests.datasets.client import api, assert_not_found
from tests.e2e.jobs_support import job_status, put_dataset, wait_for
from tests.support import sign_up

pytestmark = pytest.mark.platform

MODEL = "tiny-gemma-3-vision"


def _register(client: httpx.Client, url: str, **extra: object) -> dict[str, object]:
    made = client.post("/v1/webhooks", json={"url": url, **extra})
    assert made.status_code == 200, made.text
    return made.json()


def _job(client: httpx.Client, dataset_id: str, script: str) -> str:
    created = client.post(
        "/v1/fine_tuning/jobs", json={"model": MODEL, "training_file": dataset_id, "metadata": {"script": script}}
    )
    assert created.status_code == 200, created.text
    return created.json()["id"]


def test_a_job_that_succeeds_is_delivered_signed_and_retried_until_the_receiver_takes_it(
    platform, user, user_client, receiver
) -> None:
    receiver.statuses = [500, 500]  # the first two attempts fail; the third is taken
    endpoint = _register(user_client, receiver.url, events=["fine_tuning.job.succeeded"], description="ci")
    secret = endpoint["secret"]
    assert endpoint["object"] == "webhook_endpoint" and endpoint["status"] == "enabled"
    assert str(secret).startswith("whsec_") and endpoint["events"] == ["fine_tuning.job.succeeded"]
    # Shown once: never in the listing nor in the endpoint itself.
    assert secret not in user_client.get("/v1/webhooks").text
    assert secret not in user_client.get(f"/v1/webhooks/{endpoint['id']}").text
    assert [item["id"] for item in user_client.get("/v1/webhooks").json()["data"]] == [endpoint["id"]]

    job_id = _job(user_client, put_dataset(platform, user["uid"]), "succeed")
    wait_for(lambda: job_status(user_client, job_id) == "succeeded")
    (headers, body), *_ = wait_for(lambda: receiver.delivered("fine_tuning.job.succeeded"), timeout_s=90)

    event = OpenAI(api_key="unused").webhooks.unwrap(body, headers, secret=str(secret))
    assert event.type == "fine_tuning.job.succeeded" and event.data.id == job_id
    assert event.id == headers["webhook-id"] == event_id("fine_tuning.job.succeeded", job_id)
    assert [status for _, _, status in receiver.received] == [500, 500, 200]
    # Each attempt was signed afresh (its own timestamp may repeat within a second, its signature with it).
    assert {h["webhook-id"] for h, _, _ in receiver.received} == {event.id}

    deliveries = user_client.get(f"/v1/webhooks/{endpoint['id']}/deliveries").json()["data"]
    assert [(d["attempt"], d["status_code"], d["succeeded"]) for d in deliveries] == [
        (3, 200, True),
        (2, 500, False),
        (1, 500, False),
    ]
    assert all(d["event_id"] == event.id and d["event_type"] == event.type for d in deliveries)
    assert all(d["latency_ms"] is not None and d["attempted_at"] > 0 for d in deliveries)
    assert deliveries[0]["next_retry_at"] is None and all(d["next_retry_at"] for d in deliveries[1:])


def test_test_event_delete_and_isolation(platform, user_client, receiver) -> None:
    endpoint = _register(user_client, receiver.url)
    assert endpoint["events"] == []  # every event type
    sent = user_client.post(f"/v1/webhooks/{endpoint['id']}/test")
    assert sent.status_code == 200, sent.text
    (headers, body), *_ = wait_for(lambda: receiver.delivered("webhook.test"), timeout_s=60)
    assert json.loads(body)["data"]["id"] == endpoint["id"] and headers["webhook-id"] == sent.json()["id"]
    assert sent.json() == json.loads(body)  # the answer is the event the receiver got, whole

    # Another user sees none of it: every route is the same 404 as an unknown id.
    other = sign_up(platform.auth_host)
    with api(platform.gateway_url, other["id_token"]) as stranger:
        assert stranger.get("/v1/webhooks").json()["data"] == []
        calls = [("GET", ""), ("POST", "/test"), ("GET", "/deliveries"), ("DELETE", "")]
        assert_not_found(stranger, [(method, f"/v1/webhooks/{endpoint['id']}{path}") for method, path in calls])
    assert user_client.get("/v1/webhooks/..%2f..%2fjobs").status_code == 404

    deleted = user_client.delete(f"/v1/webhooks/{endpoint['id']}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert user_client.get(f"/v1/webhooks/{endpoint['id']}").status_code == 404
    # Its signing secret went with it, and the owner's secrets list never showed it.
    assert all(not s["name"].startswith("webhook-") for s in user_client.get("/v1/secrets").json()["data"])


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://169.254.169.254/computeMetadata/v1/", "webhook_url_not_allowed"),
        ("http://metadata.google.internal/", "webhook_url_not_allowed"),
        ("http://10.0.0.7/hook", "webhook_url_not_allowed"),
        ("ftp://example.com/hook", "invalid_webhook_url"),
    ],
)
def test_private_and_metadata_urls_are_refused(user_client, url: str, code: str) -> None:
    refused = user_client.post("/v1/webhooks", json={"url": url})
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["param"] == "url" and refused.json()["error"]["code"] == code


def test_bad_event_types_are_refused_naming_the_field(user_client, receiver) -> None:
    refused = user_client.post("/v1/webhooks", json={"url": receiver.url, "events": ["fine_tuning.job.exploded"]})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "events"


def test_an_event_committed_while_the_training_service_is_dead_is_delivered(
    platform, user, user_client, receiver, training_service
) -> None:
    """The outbox: the transition is committed while no service could enqueue its event (the training
    service SIGKILLed, as if it died right after the commit); started again, its sweep delivers it."""
    from runtune import owned
    from runtune.adapters.firestore import FirestoreMetadataStore

    endpoint = _register(user_client, receiver.url, events=["fine_tuning.job.cancelled"])
    # A job waiting for its dataset: no trainer runs, so only this test moves it.
    job_id = _job(user_client, put_dataset(platform, user["uid"], status=DatasetStatus.processing), "succeed")
    how = training_service.kill()
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in platform.emulator_env.items():
                patch.setenv(name, value)
            store = FirestoreMetadataStore.for_project(platform.project_id)
            # The training service's own transition (its repository), committed with its outbox entry.
            owned.jobs(store).update_if(
                job_id, lambda job: job.model_copy(update={"status": JobStatus.cancelled, "cancel_requested": True})
            )
            entry = store.get(outbox_path(event_id("fine_tuning.job.cancelled", job_id)))
        assert entry is not None and entry["enqueued"] is False and entry["owner"] == user["uid"]
    finally:
        training_service.restart(how)
    (headers, body), *_ = wait_for(lambda: receiver.delivered("fine_tuning.job.cancelled"), timeout_s=90)
    event = OpenAI(api_key="unused").webhooks.unwrap(body, headers, secret=str(endpoint["secret"]))
    assert event.type == "fine_tuning.job.cancelled" and event.data.id == job_id
