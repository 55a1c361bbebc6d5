"""The outbox and the dispatcher against the real Firestore emulator, with a controlled clock and DNS.

The queue around them (the Cloud Tasks emulator) is exercised end to end in tests/e2e/test_webhooks.py."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc

from runtune import owned
from runtune.adapters.file_secrets import LocalFileSecretStore
from runtune.adapters.firestore import FirestoreMetadataStore
from runtune.adapters.permitted import PermittedMetadataStore
from runtune.outbox import event_id, on_transition, outbox_entry, outbox_path
from runtune.schemas.jobs import Job, JobStatus, job_path
from runtune.schemas.webhooks import WebhookEndpoint
from runtune.webhooks.destinations import DestinationPolicy
from runtune.webhooks.dispatcher import DONE, RETRY, Dispatcher, RetryPolicy
from runtune.webhooks.endpoints import deliveries_path, endpoints, secret_name
from runtune.webhooks.signing import new_secret

pytestmark = pytest.mark.emulators

WINDOW_S = 3600.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Receiver:
    def __init__(self, status: int) -> None:
        self.status, self.hosts = status, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                receiver.hosts.append(self.headers["host"])
                self.send_response(receiver.status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def store(emulators) -> FirestoreMetadataStore:
    return FirestoreMetadataStore.for_project(emulators.project_id)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver(500)
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


def _job(store: FirestoreMetadataStore, status: JobStatus) -> Job:
    job = Job.model_validate(
        {
            "id": f"ftjob-{uuid.uuid4().hex[:24]}",
            "owner": f"user-{uuid.uuid4().hex[:8]}",
            "model": "tiny-gemma-3-vision",
            "training_file": "file-x",
            "status": status.value,
        }
    )
    store.create(job_path(job.id), job.to_document())
    return job


def test_the_outbox_entry_is_written_with_the_transition_and_only_then(store) -> None:
    jobs = owned.jobs(store)
    job = _job(store, JobStatus.running)
    succeeded = event_id("fine_tuning.job.succeeded", job.id)
    jobs.update_if(job.id, lambda current: current.model_copy(update={"steps_completed": 3}))
    assert store.get(outbox_path(succeeded)) is None  # not a status change: no event
    jobs.update_if(job.id, lambda current: None)  # a mutate that writes nothing writes no event either
    assert store.get(outbox_path(succeeded)) is None
    jobs.update_if(job.id, lambda current: current.model_copy(update={"status": JobStatus.succeeded}))
    entry = store.get(outbox_path(succeeded))
    assert entry is not None and entry["enqueued"] is False and entry["owner"] == job.owner
    assert entry["data"] == {"id": job.id} and entry["type"] == "fine_tuning.job.succeeded"


def test_a_deployable_without_the_outbox_in_its_table_cannot_write_an_event(store) -> None:
    job = _job(store, JobStatus.running)
    engine = PermittedMetadataStore(store, "engine")  # no Firestore access at all
    with pytest.raises(gexc.PermissionDenied):
        engine.transact(job_path(job.id), lambda doc: doc, also=on_transition("job"))


def _dispatcher(
    store, tmp_path: Path, resolve: dict[str, str], clock: Clock
) -> tuple[Dispatcher, LocalFileSecretStore]:
    secrets = LocalFileSecretStore(tmp_path / "secrets")
    policy = DestinationPolicy(
        require_https=False, allow_loopback=True, resolver=lambda host, port: [resolve.get(host, "203.0.113.9")]
    )
    return Dispatcher(store, secrets, policy, RetryPolicy(WINDOW_S, 10, 3600), timeout_s=5, clock=clock), secrets


def _endpoint(store, secrets: LocalFileSecretStore, url: str) -> tuple[WebhookEndpoint, str]:
    endpoint = WebhookEndpoint(
        id=f"wh-{uuid.uuid4().hex[:24]}", owner=f"user-{uuid.uuid4().hex[:8]}", url=url, events=[]
    )
    secrets.put(endpoint.owner, secret_name(endpoint.id), new_secret())
    endpoints(store).create(endpoint)
    path, entry = outbox_entry("webhook.test", endpoint.id, endpoint.owner, endpoint_id=endpoint.id)
    entry["created_at"] = 0
    store.create(path, entry)
    return endpoint, entry["id"]


def _attempts(store, endpoint_id: str) -> list[dict]:
    return sorted((doc for _, doc in store.query(deliveries_path(endpoint_id))), key=lambda doc: doc["attempt"])


def test_a_failing_endpoint_is_retried_then_disabled_after_the_window(store, tmp_path, receiver) -> None:
    clock = Clock()
    # The hook's name resolves (in this test's DNS) to loopback: the dispatcher connects to that
    # checked address and sends the name as Host, never resolving it again (real DNS does not know it).
    dispatcher, secrets = _dispatcher(store, tmp_path, {"hooks.example.test": "127.0.0.1"}, clock)
    endpoint, evt = _endpoint(store, secrets, f"http://hooks.example.test:{receiver.port}/in")

    assert dispatcher.deliver(evt, endpoint.id) == RETRY
    clock.now = 100.0
    assert dispatcher.deliver(evt, endpoint.id) == RETRY
    assert receiver.hosts == [f"hooks.example.test:{receiver.port}"] * 2
    clock.now = WINDOW_S + 1
    assert dispatcher.deliver(evt, endpoint.id) == DONE  # given up: the queue stops retrying
    shown = endpoints(store).get(endpoint.id)
    assert shown is not None and shown.status == "disabled" and shown.disabled_at is not None
    attempts = _attempts(store, endpoint.id)
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [(1, 500), (2, 500), (3, 500)]
    assert attempts[0]["next_retry_at"] == 10 and attempts[1]["next_retry_at"] == 120
    assert attempts[2]["next_retry_at"] is None
    # Disabled: later tasks are dropped without a request.
    assert dispatcher.deliver(evt, endpoint.id) == DONE and len(receiver.hosts) == 3


def test_each_delivery_checks_the_address_again(store, tmp_path, receiver) -> None:
    clock = Clock()
    dns = {"hooks.example.test": "127.0.0.1"}
    dispatcher, secrets = _dispatcher(store, tmp_path, dns, clock)
    endpoint, evt = _endpoint(store, secrets, f"http://hooks.example.test:{receiver.port}/in")
    dns["hooks.example.test"] = "169.254.169.254"  # rebound to the metadata server after registration
    assert dispatcher.deliver(evt, endpoint.id) == RETRY
    assert receiver.hosts == []
    (attempt,) = _attempts(store, endpoint.id)
    assert attempt["status_code"] is None and "link-local" in attempt["error"]

    dns["hooks.example.test"] = "127.0.0.1"
    receiver.status = 204
    assert dispatcher.deliver(evt, endpoint.id) == DONE
    # Delivered once: a duplicate task (at least once) sends nothing more.
    assert dispatcher.deliver(evt, endpoint.id) == DONE and len(receiver.hosts) == 1
    assert endpoint.id in (store.get(outbox_path(evt)) or {})["delivered_to"]


def test_the_gcp_profile_refuses_private_and_metadata_addresses() -> None:
    from runtune.settings import ServiceSettings
    from runtune.wiring import webhook_policy

    settings = ServiceSettings.model_construct(profile="gcp", webhook_allow_loopback=False)
    policy = webhook_policy(settings)
    assert policy.require_https and not policy.allow_loopback
    for address in ("10.1.2.3", "169.254.169.254", "127.0.0.1", "192.168.0.5", "fd00::1"):
        pinned = dataclasses.replace(policy, resolver=lambda host, port, a=address: [a])
        with pytest.raises(Exception, match="cannot be sent") as refused:
            pinned.check("https://hooks.example.com/in")
        assert refused.value.param == "url"  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="https"):
        policy.check("http://hooks.example.com/in")
