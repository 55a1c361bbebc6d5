"""runtune.doctor's cloud checks: the real Google clients (Cloud Run v2, Firestore Admin, Storage,
Secret Manager; Resource Manager and IAM over REST) against one fake server that answers their REST
calls, and serves the deployment's URLs (gateway, private services, engine) too."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from google.auth.credentials import AnonymousCredentials

from runtune.doctor import all_ok
from runtune.doctor.cloud import (
    GATEWAY,
    PRIVATE_SERVICES,
    CloudClients,
    CloudDoctor,
    Deployment,
    required_jobs,
)
from runtune.doctor.identity import GooglePolicies, RoleOn, identity_checks, roles_from_grants
from runtune.indexes import COMPOSITE_INDEXES, TTL_POLICIES

PROJECT, REGION = "demo-proj", "us-central1"
LOCATION = f"projects/{PROJECT}/locations/{REGION}"
DATABASE = f"projects/{PROJECT}/databases/(default)"
BUCKET = f"{PROJECT}-runtune-data"
BASE = "google/gemma-3-4b-it"
GATEWAY_SA = f"serviceAccount:runtune-gateway@{PROJECT}.iam.gserviceaccount.com"


class FakeGoogle:
    def __init__(self) -> None:
        self.base = ""
        self.resources: dict[str, Any] = {}
        self.policies: dict[str, list[dict[str, Any]]] = {}
        self.engine_models = [BASE]

    def healthy_deployment(self) -> None:
        for name in (GATEWAY, *PRIVATE_SERVICES.values()):
            self.resources[f"v2/{LOCATION}/services/{name}"] = {
                "name": f"{LOCATION}/services/{name}",
                "uri": f"{self.base}/svc/{name}",
                "ingress": "INGRESS_TRAFFIC_ALL" if name == GATEWAY else "INGRESS_TRAFFIC_INTERNAL_ONLY",
                "terminalCondition": {"type": "Ready", "state": "CONDITION_SUCCEEDED"},
                "template": {"containers": [{"args": [BASE, "--enable-lora"] if name.endswith("engine") else []}]},
            }
            members = ["allUsers"] if name == GATEWAY else [GATEWAY_SA]
            self.policies[f"v2/{LOCATION}/services/{name}"] = [{"role": "roles/run.invoker", "members": members}]
        for job in required_jobs():
            template: dict[str, Any] = {"containers": [{"image": "x"}]}
            if job.gpu:
                template["nodeSelector"] = {"accelerator": job.gpu}
            if job.mounts_bucket:
                template["volumes"] = [{"name": "data", "gcs": {"bucket": BUCKET}}]
                template["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/mnt/runtune-data"}]
            self.resources[f"v2/{LOCATION}/jobs/{job.name}"] = {
                "name": f"{LOCATION}/jobs/{job.name}",
                "template": {"template": template},
            }
        self.resources[f"v1/{DATABASE}/collectionGroups/-/indexes"] = {
            "indexes": [
                {
                    "name": f"{DATABASE}/collectionGroups/{index.collection}/indexes/i{n}",
                    "queryScope": "COLLECTION",
                    "state": "READY",
                    "fields": [{"fieldPath": f.path, "order": f.order} for f in index.fields]
                    + [{"fieldPath": "__name__", "order": "DESCENDING"}],
                }
                for n, index in enumerate(COMPOSITE_INDEXES)
            ]
        }
        for collection, field in TTL_POLICIES.items():
            path = f"{DATABASE}/collectionGroups/{collection}/fields/{field}"
            self.resources[f"v1/{path}"] = {"name": path, "ttlConfig": {"state": "ACTIVE"}}

    def indexes(self) -> list[dict[str, Any]]:
        return self.resources[f"v1/{DATABASE}/collectionGroups/-/indexes"]["indexes"]

    def handle(self, method: str, path: str) -> tuple[int, Any]:
        path = unquote(path).lstrip("/")
        if path.startswith("svc/"):
            _, service, rest = path.split("/", 2) if path.count("/") >= 2 else (*path.split("/"), "")
            if service == GATEWAY:
                return (200, {"status": "ok"}) if rest == "healthz" else (401, {"error": {"code": 401}})
            return 404, "<html>Error: Page not found</html>"  # internal ingress, seen from outside
        if path.startswith("engine/"):
            if path == "engine/v1/models":
                return 200, {"object": "list", "data": [{"id": m} for m in self.engine_models]}
            return 200, {}
        for suffix in (":getIamPolicy",):
            if path.endswith(suffix):
                resource = path.removesuffix(suffix)
                return 200, {"version": 3, "bindings": self.policies.get(resource, [])}
        if path.startswith("storage/v1/b/") and path.endswith("/iam"):
            bucket = path.split("/")[3]
            return 200, {"kind": "storage#policy", "version": 3, "bindings": self.policies.get(f"bucket/{bucket}", [])}
        if path in self.resources:
            return 200, self.resources[path]
        return 404, {"error": {"code": 404, "message": f"{path} not found", "status": "NOT_FOUND"}}


@pytest.fixture
def fake() -> Iterator[FakeGoogle]:
    fake = FakeGoogle()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            status, payload = fake.handle(self.command, urlsplit(self.path).path)
            data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if isinstance(payload, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    fake.healthy_deployment()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()


def _doctor(fake: FakeGoogle, **deployment: Any) -> CloudDoctor:
    clients = CloudClients.create(AnonymousCredentials(), {"run": fake.base, "firestore": fake.base})
    return CloudDoctor(Deployment(PROJECT, REGION, **deployment), clients, timeout_s=5)


def _by_name(checks: list) -> dict[str, Any]:
    return {check.name: check for check in checks}


def test_a_deployment_as_terraform_declares_it_is_all_green(fake) -> None:
    checks = _doctor(fake).run()
    assert all_ok(checks), [c for c in checks if not c.ok]
    by_name = _by_name(checks)
    # From outside the VPC the engine's model list cannot be read: said, and not a failure.
    assert by_name["engine: serves the bases"].skipped
    assert {f"job {job.name}" for job in required_jobs()} <= set(by_name)
    assert {"job runtune-trainer-l4", "job runtune-trainer-rtx-pro-6000", "job runtune-ingest"} <= set(by_name)


def test_a_missing_index_is_named_with_the_fix(fake) -> None:
    fake.resources[f"v1/{DATABASE}/collectionGroups/-/indexes"]["indexes"] = [
        index for index in fake.indexes() if "/collectionGroups/uploads/" not in index["name"]
    ]
    failed = [c for c in _doctor(fake).run() if not c.ok]
    assert [c.name for c in failed] == ["index uploads(owner ASCENDING, created_at DESCENDING)"]
    assert failed[0].fix == "terraform -chdir=infra apply"


def test_a_building_index_and_an_inactive_ttl_say_so(fake) -> None:
    fake.indexes()[0]["state"] = "CREATING"
    fake.resources[f"v1/{DATABASE}/collectionGroups/uploads/fields/delete_after"]["ttlConfig"] = {"state": "CREATING"}
    del fake.resources[f"v1/{DATABASE}/collectionGroups/idempotency_keys/fields/expires_at"]
    failed = _by_name([c for c in _doctor(fake).run() if not c.ok])
    assert failed[f"index {COMPOSITE_INDEXES[0].describe()}"].detail == "still building"
    assert "being created" in failed["ttl uploads.delete_after"].detail
    assert failed["ttl idempotency_keys.expires_at"].fix == "terraform -chdir=infra apply"


def test_a_public_private_service_is_named_with_the_command_that_closes_it(fake) -> None:
    name = "runtune-training"
    fake.resources[f"v2/{LOCATION}/services/{name}"]["ingress"] = "INGRESS_TRAFFIC_ALL"
    fake.policies[f"v2/{LOCATION}/services/{name}"].append({"role": "roles/run.invoker", "members": ["allUsers"]})
    failed = _by_name([c for c in _doctor(fake).run() if not c.ok])
    assert set(failed) == {"training: private"}
    assert "INGRESS_TRAFFIC_ALL" in failed["training: private"].detail
    assert (
        f"gcloud run services remove-iam-policy-binding {name} --region {REGION} --member=allUsers "
        "--role=roles/run.invoker" in failed["training: private"].fix
    )


def test_jobs_missing_on_the_wrong_gpu_or_without_the_bucket_fail(fake) -> None:
    del fake.resources[f"v2/{LOCATION}/jobs/runtune-evaluate"]
    l4 = fake.resources[f"v2/{LOCATION}/jobs/runtune-trainer-l4"]["template"]["template"]
    l4["nodeSelector"] = {"accelerator": "nvidia-rtx-pro-6000"}
    pro = fake.resources[f"v2/{LOCATION}/jobs/runtune-trainer-rtx-pro-6000"]["template"]["template"]
    pro["containers"][0]["volumeMounts"] = []
    failed = _by_name([c for c in _doctor(fake).run() if not c.ok])
    assert set(failed) == {"job runtune-evaluate", "job runtune-trainer-l4", "job runtune-trainer-rtx-pro-6000"}
    assert "does not exist" in failed["job runtune-evaluate"].detail
    assert "not nvidia-l4" in failed["job runtune-trainer-l4"].detail
    assert f"does not mount the bucket {BUCKET}" in failed["job runtune-trainer-rtx-pro-6000"].detail


def test_the_engine_is_checked_against_its_configured_bases(fake) -> None:
    doctor = _doctor(fake, engine_url=f"{fake.base}/engine")
    doctor.authorization = lambda url: "Bearer id-token"
    assert _by_name(doctor.run())["engine: serves the bases"].ok
    doctor.expected_bases = ["google/gemma-3-27b-it"]
    failed = _by_name([c for c in doctor.run() if not c.ok])
    assert set(failed) == {"engine: bases", "engine: serves the bases"}
    # By default the bases are the serving contract's: an engine deployed with another fails.
    doctor.expected_bases = None
    fake.resources[f"v2/{LOCATION}/services/runtune-engine"]["template"]["containers"][0]["args"][0] = "other/base"
    failed = _by_name([c for c in doctor.run() if not c.ok])
    assert "expected google/gemma-3-4b-it" in failed["engine: bases"].detail
    fake.resources[f"v2/{LOCATION}/services/runtune-engine"]["template"]["containers"][0]["args"][0] = BASE

    def no_token(url: str) -> str:
        raise RuntimeError("user credentials cannot mint ID tokens")

    doctor.expected_bases, doctor.authorization = None, no_token
    failed = _by_name([c for c in doctor.run() if not c.ok])
    assert "gcloud auth print-identity-token" in failed["engine: serves the bases"].fix


def test_an_unreadable_service_names_the_viewer_role(fake) -> None:
    del fake.resources[f"v2/{LOCATION}/services/runtune-inference"]
    failed = _by_name([c for c in _doctor(fake).run() if not c.ok])
    assert "does not exist" in failed["inference: deployed"].detail


class _Grant:
    def __init__(self, account: str, role: str, resource: str) -> None:
        self.account, self.role, self.resource = account, role, resource


def test_roles_from_grants_names_accounts_resources_and_custom_roles() -> None:
    expected = roles_from_grants(
        [
            _Grant("training", "custom:job_runner", "job:trainer"),
            _Grant("inference", "roles/storage.objectUser", "bucket:data"),
            _Grant("engine", "roles/secretmanager.secretAccessor", "secret:hf_token"),
            _Grant("training", "roles/iam.serviceAccountUser", "service_account:trainer"),
            _Grant("trainer", "roles/secretmanager.secretAccessor", "project:user_secrets"),
        ],
        PROJECT,
        BUCKET,
    )
    training = expected[f"runtune-training@{PROJECT}.iam.gserviceaccount.com"]
    runner = f"projects/{PROJECT}/roles/runtuneJobRunner"
    assert RoleOn(runner, "job:runtune-trainer-l4") in training
    assert RoleOn(runner, "job:runtune-trainer-rtx-pro-6000") in training
    assert (
        RoleOn("roles/iam.serviceAccountUser", f"service_account:runtune-trainer@{PROJECT}.iam.gserviceaccount.com")
        in training
    )
    assert expected[f"runtune-inference@{PROJECT}.iam.gserviceaccount.com"] == {
        RoleOn("roles/storage.objectUser", f"bucket:{BUCKET}")
    }
    assert (
        RoleOn("roles/secretmanager.secretAccessor", "secret:runtune-hf-token")
        in expected[f"runtune-engine@{PROJECT}.iam.gserviceaccount.com"]
    )
    assert (
        RoleOn("roles/secretmanager.secretAccessor", "project")
        in expected[f"runtune-trainer@{PROJECT}.iam.gserviceaccount.com"]
    )


def test_identity_checks_read_every_kind_of_policy_and_name_what_is_missing(fake) -> None:
    inference = f"runtune-inference@{PROJECT}.iam.gserviceaccount.com"
    training = f"runtune-training@{PROJECT}.iam.gserviceaccount.com"
    member = f"serviceAccount:{inference}"
    fake.policies[f"v1/projects/{PROJECT}"] = [{"role": "roles/datastore.user", "members": [member]}]
    fake.policies[f"bucket/{BUCKET}"] = [{"role": "roles/storage.objectViewer", "members": [member]}]
    fake.policies[f"v2/{LOCATION}/services/runtune-engine"] = [{"role": "roles/run.invoker", "members": [member]}]
    fake.policies[f"v1/projects/{PROJECT}/secrets/runtune-hf-token"] = [
        {"role": "roles/secretmanager.secretAccessor", "members": [member]}
    ]
    fake.policies[f"v1/projects/-/serviceAccounts/{inference}"] = [
        {"role": "roles/iam.serviceAccountTokenCreator", "members": [member]}
    ]
    fake.policies[f"v2/{LOCATION}/jobs/runtune-trainer-l4"] = [
        {"role": f"projects/{PROJECT}/roles/runtuneJobRunner", "members": [f"serviceAccount:{training}"]}
    ]
    expected = {
        inference: {
            RoleOn("roles/datastore.user", "project"),
            RoleOn("roles/storage.objectUser", f"bucket:{BUCKET}"),  # the deployment grants only the viewer
            RoleOn("roles/run.invoker", "service:runtune-engine"),
            RoleOn("roles/secretmanager.secretAccessor", "secret:runtune-hf-token"),
            RoleOn("roles/iam.serviceAccountTokenCreator", f"service_account:{inference}"),
        },
        training: {RoleOn(f"projects/{PROJECT}/roles/runtuneJobRunner", "job:runtune-trainer-l4")},
    }
    endpoints = {name: fake.base for name in ("run", "storage", "secretmanager", "crm", "iam")}
    policies = GooglePolicies(PROJECT, REGION, credentials=AnonymousCredentials(), endpoints=endpoints)
    checks = _by_name(identity_checks(expected, policies, PROJECT, REGION))
    assert checks["identity runtune-training"].ok
    failed = checks["identity runtune-inference"]
    assert not failed.ok
    assert failed.detail == f"missing roles/storage.objectUser on bucket:{BUCKET}"
    assert (
        f"gcloud storage buckets add-iam-policy-binding gs://{BUCKET} --member={member} --role=roles/storage.objectUser"
        in failed.fix
    )
