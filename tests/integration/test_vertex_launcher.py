"""VertexJobLauncher: the real `google-cloud-aiplatform` (aiplatform_v1) REST client against a fake of
the Vertex AI API v1 JobService.

Vertex AI has no emulator, so the fake implements the three calls the launcher makes (create, get and
cancel a CustomJob), records every request, and the tests assert the request shape Vertex AI would
receive: the worker pool (machine, accelerators, image, command, env), the scheduling (timeout, restart,
Spot), the service account; and how the job's states and errors come back through the port.
"""

from __future__ import annotations

from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import AcceleratorType, Scheduling

from runtune.adapters.vertex_launcher import VertexJobLauncher, trainer_command
from runtune.compute import VERTEX_MACHINES
from runtune.errors import UpstreamUnavailable
from runtune.ports.launcher import DEADLINE_ENV, ExecutionState, LaunchRequest, Workload
from tests.support import Recorded, fake_json_api, google_client, google_error, served_fake

PROJECT, NUMBER, REGION = "acme-proj", "123456789", "us-central1"
PARENT = f"projects/{PROJECT}/locations/{REGION}"
IMAGE = "us-central1-docker.pkg.dev/acme-proj/runtune/trainer:v1"
TRAINER_SA = "runtune-trainer@acme-proj.iam.gserviceaccount.com"
# The client sends enums as their numbers (the REST transport's `use_integers_for_enums`).
H100, L4 = AcceleratorType.NVIDIA_H100_80GB.value, AcceleratorType.NVIDIA_L4.value
STANDARD, SPOT = Scheduling.Strategy.STANDARD.value, Scheduling.Strategy.SPOT.value
BASE_ENV = {"RUNTUNE_PROFILE": "gcp", "RUNTUNE_PROJECT_ID": PROJECT, "RUNTUNE_BUCKET": "acme-proj-runtune-data"}


class FakeVertex:
    """Just enough of aiplatform.googleapis.com/v1: customJobs.create, .get and .cancel."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.jobs: dict[str, dict[str, Any]] = {}
        self.fail_create_with: tuple[int, str] | None = None
        self.fail_get_with: int | None = None
        self._next = 1000

    def handle(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        resource = path.removeprefix("/v1/")
        if method == "POST" and resource == f"{PARENT}/customJobs":
            if self.fail_create_with is not None:
                code, status = self.fail_create_with
                return code, google_error(code, "create refused", status)
            self._next += 1
            # Vertex names the job with the project's number and an id of its own.
            name = f"projects/{NUMBER}/locations/{REGION}/customJobs/{self._next}"
            self.jobs[name] = {**(body or {}), "name": name, "state": "JOB_STATE_PENDING"}
            return 200, self.jobs[name]
        if method == "POST" and resource.endswith(":cancel"):
            name = resource.removesuffix(":cancel")
            if name not in self.jobs:
                return 404, google_error(404, f"CustomJob {name} not found")
            if self.jobs[name]["state"] in ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED"):
                return 400, google_error(400, "The job is already in a final state", "FAILED_PRECONDITION")
            self.jobs[name]["state"] = "JOB_STATE_CANCELLING"
            return 200, {}
        if method == "GET" and self.fail_get_with is not None:
            return self.fail_get_with, google_error(self.fail_get_with, "backend error")
        if method == "GET" and resource in self.jobs:
            return 200, self.jobs[resource]
        return 404, google_error(404, f"{resource} not found")


fake = served_fake(FakeVertex)


@pytest.fixture
def launcher(fake: tuple[FakeVertex, str]) -> VertexJobLauncher:
    return VertexJobLauncher(
        PROJECT, REGION, image=IMAGE, service_account=TRAINER_SA, base_env=BASE_ENV, **google_client(fake[1])
    )


def _request(machine: str = "a3-highgpu-8g", *, spot: bool = False, **fields: Any) -> LaunchRequest:
    return LaunchRequest(
        job_id="ftjob-123",
        env={"RUNTUNE_JOB_SOURCE": "api"},
        timeout_seconds=86_400,
        machine=machine,
        spot=spot,
        **fields,
    )


def test_launch_creates_one_worker_pool_on_the_machine_with_the_trainer_contract(fake, launcher) -> None:
    server, _ = fake

    name = launcher.launch(_request("a3-highgpu-8g"))

    assert name == f"projects/{NUMBER}/locations/{REGION}/customJobs/1001"
    [sent] = server.requests
    assert (sent.method, sent.path) == ("POST", f"/v1/{PARENT}/customJobs")
    spec = sent.body["jobSpec"]
    [pool] = spec["workerPoolSpecs"]
    assert pool["machineSpec"] == {
        "machineType": "a3-highgpu-8g",
        "acceleratorType": H100,
        "acceleratorCount": 8,
    }
    assert pool["replicaCount"] == "1"  # int64, a string in JSON
    container = pool["containerSpec"]
    assert container["imageUri"] == IMAGE
    # Eight GPUs: one process each under torchrun, the job id the trainer's only argument.
    assert container["command"] == ["torchrun", "--standalone", "--nproc_per_node", "8", "-m", "jobs.trainer"]
    assert container["args"] == ["ftjob-123"]
    env = {item["name"]: item["value"] for item in container["env"]}
    # What Terraform sets on the Cloud Run trainer jobs, the request's variables, and the deadline.
    assert env == {**BASE_ENV, "RUNTUNE_JOB_SOURCE": "api", DEADLINE_ENV: "86400"}
    assert [item["name"] for item in container["env"]] == sorted(env)
    assert spec["serviceAccount"] == TRAINER_SA
    assert spec["scheduling"] == {
        "timeout": "86400s",
        "restartJobOnWorkerRestart": True,
        "strategy": STANDARD,
        # Bounded: past it Vertex expires the job (a failure the reconciler reports).
        "maxWaitDuration": "21600s",
    }
    assert sent.body["displayName"] == "runtune-trainer-ftjob-123"


def test_a_job_that_allows_spot_asks_for_spot_capacity(fake, launcher) -> None:
    server, _ = fake
    launcher.launch(_request("g2-standard-48", spot=True))

    [sent] = server.requests
    assert sent.body["jobSpec"]["scheduling"]["strategy"] == SPOT
    [pool] = sent.body["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"]["acceleratorType"] == L4
    assert pool["machineSpec"]["acceleratorCount"] == 4


def test_one_gpu_runs_the_trainer_as_on_cloud_run(fake, launcher) -> None:
    server, _ = fake
    launcher.launch(_request("a2-ultragpu-1g"))

    [pool] = server.requests[0].body["jobSpec"]["workerPoolSpecs"]
    assert pool["containerSpec"]["command"] == ["python", "-m", "jobs.trainer"]
    assert pool["machineSpec"]["acceleratorCount"] == 1


@pytest.mark.parametrize("shape", VERTEX_MACHINES, ids=lambda m: m.name)
def test_every_machine_of_the_table_is_a_valid_request(fake, launcher, shape) -> None:
    server, _ = fake
    launcher.launch(_request(shape.name))

    [pool] = server.requests[0].body["jobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"]["acceleratorCount"] == shape.gpu_count
    assert pool["containerSpec"]["command"] == trainer_command(shape.gpu_count)


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"machine": "n1-standard-4"}, "machine must be one of"),
        ({"machine": None}, "machine must be one of"),
        ({"machine": "a3-highgpu-8g", "gpu": "nvidia-l4"}, "has nvidia-h100-80gb GPUs"),
        ({"machine": "a3-highgpu-8g", "workload": Workload.ingest}, "Vertex AI runs training only"),
        ({"machine": "a3-highgpu-8g", "env": {"HF_TOKEN": "x"}}, "looks like a secret"),
        ({"machine": "a3-highgpu-8g", "env": {"CLOUD_RUN_JOB": "x"}}, "reserved for the launcher"),
    ],
)
def test_requests_that_break_the_contract_are_refused_before_any_call(fake, launcher, request_fields, message) -> None:
    server, _ = fake
    with pytest.raises(ValueError, match=message):
        launcher.launch(LaunchRequest(job_id="ftjob-1", **request_fields))
    assert server.requests == []


@pytest.mark.parametrize(
    ("code", "status", "says"),
    [
        (429, "RESOURCE_EXHAUSTED", "quota"),
        (403, "PERMISSION_DENIED", "permission denied"),
        (400, "INVALID_ARGUMENT", "the request was refused: create refused"),
        (503, "UNAVAILABLE", "Vertex AI is unavailable"),
    ],
)
def test_a_refused_create_is_an_upstream_error_saying_why(fake, launcher, code, status, says) -> None:
    server, _ = fake
    server.fail_create_with = (code, status)
    with pytest.raises(UpstreamUnavailable, match=says):
        launcher.launch(_request())


def test_cancel_calls_cancel_custom_job_and_the_job_shows_cancelling_then_cancelled(fake, launcher) -> None:
    server, _ = fake
    name = launcher.launch(_request())
    server.jobs[name]["state"] = "JOB_STATE_RUNNING"

    launcher.cancel(name)

    assert (server.requests[-1].method, server.requests[-1].path) == ("POST", f"/v1/{name}:cancel")
    status = launcher.status(name)
    assert (status.state, status.reason) == (ExecutionState.running, "cancelling")
    server.jobs[name]["state"] = "JOB_STATE_CANCELLED"
    assert launcher.status(name).state is ExecutionState.cancelled


def test_cancel_of_a_finished_or_missing_job_is_not_angoogle_error(fake, launcher) -> None:
    server, _ = fake
    name = launcher.launch(_request())
    server.jobs[name]["state"] = "JOB_STATE_SUCCEEDED"
    launcher.cancel(name)  # 400 FAILED_PRECONDITION: already over
    launcher.cancel(f"projects/{NUMBER}/locations/{REGION}/customJobs/999")  # 404
    # Another launcher's name (a Cloud Run execution): nothing is called.
    calls = len(server.requests)
    launcher.cancel(f"{PARENT}/jobs/runtune-trainer-l4/executions/runtune-trainer-l4-abc12")
    assert len(server.requests) == calls


@pytest.mark.parametrize(
    ("job", "state", "reason", "exit_code"),
    [
        ({"state": "JOB_STATE_QUEUED"}, ExecutionState.pending, "waiting for capacity", None),
        ({"state": "JOB_STATE_PENDING"}, ExecutionState.pending, "waiting for capacity", None),
        ({"state": "JOB_STATE_RUNNING"}, ExecutionState.running, None, None),
        ({"state": "JOB_STATE_SUCCEEDED"}, ExecutionState.succeeded, None, 0),
        ({"state": "JOB_STATE_CANCELLED"}, ExecutionState.cancelled, "cancelled", None),
        (
            {
                "state": "JOB_STATE_FAILED",
                "error": {"code": 3, "message": "The replica workerpool0-0 exited with a non-zero status of 3."},
            },
            ExecutionState.failed,
            "exit code 3",
            3,
        ),
        (
            {
                "state": "JOB_STATE_FAILED",
                "error": {"code": 4, "message": "Job exceeded the timeout."},
                "jobSpec": {"scheduling": {"timeout": "7200s"}},
            },
            ExecutionState.failed,
            "timeout after 7200s",
            None,
        ),
        (
            {"state": "JOB_STATE_EXPIRED", "error": {"code": 4, "message": "No capacity"}},
            ExecutionState.failed,
            "expired before capacity was found: No capacity",
            None,
        ),
        ({"state": "JOB_STATE_FAILED"}, ExecutionState.failed, "failed", None),
        ({"state": "JOB_STATE_UNSPECIFIED"}, ExecutionState.unknown, None, None),
    ],
)
def test_job_states_map_onto_the_launchers_states(fake, launcher, job, state, reason, exit_code) -> None:
    server, _ = fake
    name = f"projects/{NUMBER}/locations/{REGION}/customJobs/42"
    server.jobs[name] = {"name": name, **job}

    status = launcher.status(name)

    assert (status.name, status.state, status.reason, status.exit_code) == (name, state, reason, exit_code)


def test_status_of_a_missing_or_foreign_job_is_unknown_and_an_outage_is_an_upstreamgoogle_error(fake, launcher) -> None:
    server, _ = fake
    missing = launcher.status(f"projects/{NUMBER}/locations/{REGION}/customJobs/7")
    assert (missing.state, missing.reason) == (ExecutionState.unknown, "custom job not found")
    # Another region's job is not this deployment's: no call.
    calls = len(server.requests)
    foreign = launcher.status(f"projects/{NUMBER}/locations/europe-west4/customJobs/7")
    assert foreign.state is ExecutionState.unknown and len(server.requests) == calls

    server.fail_get_with = 500
    with pytest.raises(UpstreamUnavailable, match="status"):
        launcher.status(f"projects/{NUMBER}/locations/{REGION}/customJobs/7")


def test_wiring_routes_each_job_to_the_backend_its_plan_chose(fake, monkeypatch: pytest.MonkeyPatch) -> None:
    """The training service's launcher on a deployment with Vertex machines (runtune/wiring.py): a
    request naming a machine becomes a CustomJob, one without runs the GPU's Cloud Run job; each
    execution is followed and cancelled on its own backend."""
    from runtune import wiring
    from runtune.adapters.compute_launcher import ComputeLauncher
    from runtune.settings import EMULATOR_VARIABLES, ServiceSettings
    from tests.integration.test_cloud_run_launcher import FakeCloudRun

    vertex, vertex_url = fake
    cloud_run = FakeCloudRun()
    for name in EMULATOR_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    # Anonymous credentials: the Google clients would look for application default ones.
    monkeypatch.setattr("google.auth.default", lambda *args, **kwargs: (AnonymousCredentials(), PROJECT))
    with fake_json_api(lambda m, p, q, b: cloud_run.handle(m, p, b), cloud_run.requests) as run_url:
        settings = ServiceSettings(
            profile="gcp",
            project_id=PROJECT,
            region=REGION,
            gateway_service_account="gw@acme-proj.iam.gserviceaccount.com",
            service_audience="https://training.example",
            run_api_endpoint=run_url,
            vertex_api_endpoint=vertex_url,
            vertex_machines=["a3-highgpu-8g"],
            vertex_trainer_image=IMAGE,
            vertex_service_account=TRAINER_SA,
            bucket="acme-proj-runtune-data",
        )
        launcher = wiring.job_launcher(settings)
        assert isinstance(launcher, ComputeLauncher)

        custom_job = launcher.launch(_request("a3-highgpu-8g", spot=True))
        execution = launcher.launch(LaunchRequest(job_id="ftjob-9", gpu="nvidia-l4"))

        [created] = vertex.requests
        assert created.body["jobSpec"]["scheduling"]["strategy"] == SPOT
        env = {
            item["name"]: item["value"]
            for item in created.body["jobSpec"]["workerPoolSpecs"][0]["containerSpec"]["env"]
        }
        # The trainer jobs' variables (Terraform's local.env.trainer), from the service's own settings.
        assert {key: env[key] for key in BASE_ENV} == BASE_ENV
        assert (env["RUNTUNE_REGION"], env["RUNTUNE_LOG_LEVEL"]) == (REGION, "INFO")
        [run] = cloud_run.requests
        assert run.path.endswith("/jobs/runtune-trainer-l4:run")
        cloud_run.executions[execution] = {"name": execution, "runningCount": 1}
        vertex.jobs[custom_job]["state"] = "JOB_STATE_RUNNING"
        assert launcher.status(custom_job).state is ExecutionState.running
        assert launcher.status(execution).state is ExecutionState.running
        launcher.cancel(custom_job)
        launcher.cancel(execution)
        assert vertex.requests[-1].path == f"/v1/{custom_job}:cancel"
        assert cloud_run.requests[-1].path == f"/v2/{execution}:cancel"
        assert launcher.status("local-123").state is ExecutionState.unknown
    # Ingestion and evaluation launchers stay on Cloud Run alone.
    assert not isinstance(wiring.job_launcher(settings, Workload.ingest), ComputeLauncher)


@pytest.mark.emulators
def test_the_job_service_launches_a_run_too_big_for_cloud_run_on_vertex(emulators, fake, launcher) -> None:
    """Against the Firestore emulator: bf16 LoRA of a 27B model at batch 4 x 4096 tokens (about 100
    GiB a GPU) is planned on the H200 machine, launched as its CustomJob with the Vertex timeout, and
    the job records where it runs."""
    import uuid

    from runtune.adapters.firestore import FirestoreMetadataStore
    from runtune.schemas import Dataset, DatasetStatus, TaskKind
    from runtune.schemas.common import new_id
    from runtune.schemas.jobs import CreateJobRequest
    from services.training.jobs_service import JobService, SchedulingPolicy

    server, _ = fake
    store = FirestoreMetadataStore.for_project(emulators.project_id)
    policy = SchedulingPolicy(
        max_running_per_user=5,
        heartbeat_stale_s=120,
        start_timeout_s=900,
        task_timeout_s=3600,
        vertex_task_timeout_s=2 * 86_400,
    )
    service = JobService(store, launcher, policy, profile="gcp", vertex_machines=["a3-highgpu-8g", "a3-ultragpu-8g"])
    uid = f"user-{uuid.uuid4().hex[:8]}"
    dataset = Dataset(
        id=new_id("file"),
        owner=uid,
        name="pets",
        status=DatasetStatus.ready,
        task_kind=TaskKind.classification,
        modality="vision",
        splits={"train": 400, "validation": 10},
        labels=["cat", "dog"],
    )
    store.set(f"datasets/{dataset.id}", dataset.to_document())
    options = {"method": "lora", "max_length": 4096, "spot": True}
    request = CreateJobRequest.model_validate(
        {
            "model": "google/gemma-3-27b-it",
            "training_file": dataset.id,
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"batch_size": 4}, "runtune": options}},
        }
    )

    created = service.create(uid, request, None)

    [sent] = server.requests
    spec = sent.body["jobSpec"]
    assert spec["workerPoolSpecs"][0]["machineSpec"]["machineType"] == "a3-ultragpu-8g"
    assert spec["workerPoolSpecs"][0]["containerSpec"]["args"] == [created.id]
    assert spec["scheduling"]["timeout"] == "172800s" and spec["scheduling"]["strategy"] == SPOT
    stored = service.jobs.get(created.id)
    assert stored is not None and stored.execution_name == f"projects/{NUMBER}/locations/{REGION}/customJobs/1001"
    assert (stored.machine, stored.gpu, stored.estimate.compute) == ("a3-ultragpu-8g", "nvidia-h200-141gb", "vertex")
    assert stored.estimated_gpu_seconds == stored.estimate.seconds * 8

    # Queued for its machine far past the start timeout: waited for, not taken for a lost trainer.
    import time

    later = time.time() + 4 * 3600
    assert created.id not in service.reconcile(now=later)
    assert [r.path for r in server.requests if r.path.endswith(":cancel")] == []
    assert service.jobs.get(created.id).status.value == "queued"
    # Vertex gives up after its max wait: the job fails saying so.
    server.jobs[stored.execution_name].update(
        state="JOB_STATE_EXPIRED", error={"code": 4, "message": "Resources were not available"}
    )
    assert created.id in service.reconcile(now=later)
    failed = service.jobs.get(created.id)
    assert failed.status.value == "failed" and "expired before capacity was found" in failed.error.message
