"""CloudRunJobLauncher: the real `google-cloud-run` REST client against a fake Admin API v2 server.

Cloud Run has no emulator, so the fake implements the three calls the launcher makes, records every
request, and the tests assert the request shape Cloud Run would receive.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from runtune.adapters.cloud_run_launcher import CloudRunJobLauncher
from runtune.errors import UpstreamUnavailable
from runtune.ports.launcher import ExecutionState, LaunchRequest, Workload
from tests.support import Recorded, google_client, google_error, pets_dataset, served_fake

PROJECT, REGION, JOB = "demo-proj", "us-central1", "runtune-trainer-l4"
JOBS = f"projects/{PROJECT}/locations/{REGION}/jobs"
JOB_PATH = f"{JOBS}/{JOB}"
EXECUTION = f"{JOB_PATH}/executions/{JOB}-abc12"
L4 = "nvidia-l4"


class FakeCloudRun:
    """Just enough of run.googleapis.com/v2: jobs.run, executions.cancel, executions.get."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.executions: dict[str, dict[str, Any]] = {}
        self.fail_run_with: int | None = None
        self.fail_cancel_with: int | None = None

    def handle(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        resource = path.removeprefix("/v2/")
        if method == "POST" and resource.endswith(":run"):
            if self.fail_run_with is not None:
                return self.fail_run_with, google_error(self.fail_run_with, "run refused")
            job = resource.removesuffix(":run")
            return 200, _operation("op-run", {"name": f"{job}/executions/{job.rsplit('/', 1)[-1]}-abc12"})
        if method == "POST" and resource.endswith(":cancel"):
            execution = resource.removesuffix(":cancel")
            if execution not in self.executions:
                return 404, google_error(404, f"Resource '{execution}' was not found")
            if self.fail_cancel_with is not None:
                return self.fail_cancel_with, google_error(self.fail_cancel_with, "cancel refused")
            if "completionTime" in self.executions[execution]:
                return 400, google_error(400, "Execution already completed", "FAILED_PRECONDITION")
            return 200, _operation("op-cancel", {"name": execution})
        if method == "GET" and resource in self.executions:
            return 200, self.executions[resource]
        return 404, google_error(404, f"Resource '{resource}' was not found")


def _operation(op_id: str, execution: dict[str, Any]) -> dict[str, Any]:
    metadata = {"@type": "type.googleapis.com/google.cloud.run.v2.Execution", **execution}
    return {
        "name": f"projects/{PROJECT}/locations/{REGION}/operations/{op_id}",
        "metadata": metadata,
        "done": False,
    }


fake = served_fake(FakeCloudRun)


@pytest.fixture
def launcher(fake: tuple[FakeCloudRun, str]) -> CloudRunJobLauncher:
    return CloudRunJobLauncher(PROJECT, REGION, **google_client(fake[1]))


def test_launch_sends_overrides_and_returns_execution_name(fake, launcher) -> None:
    server, _ = fake
    request = LaunchRequest(
        job_id="ftjob-123",
        env={"RUNTUNE_BUCKET": "runtune-demo", "RUNTUNE_PROFILE": "gcp"},
        timeout_seconds=3600,
        task_count=1,
        gpu=L4,
    )

    assert launcher.launch(request) == EXECUTION

    [sent] = server.requests
    assert (sent.method, sent.path) == ("POST", f"/v2/{JOB_PATH}:run")
    overrides = sent.body["overrides"]
    [container] = overrides["containerOverrides"]
    assert container["args"] == ["ftjob-123"]
    assert container["env"] == [
        {"name": "RUNTUNE_BUCKET", "value": "runtune-demo"},
        {"name": "RUNTUNE_PROFILE", "value": "gcp"},
        # The task timeout, which Cloud Run does not expose to the task: the trainer's deadline.
        {"name": "RUNTUNE_TASK_DEADLINE_S", "value": "3600"},
    ]
    assert overrides["timeout"] == "3600s"
    assert overrides["taskCount"] == 1


@pytest.mark.parametrize(
    ("workload", "gpu", "job"),
    [
        (Workload.train, "nvidia-l4", "runtune-trainer-l4"),
        (Workload.train, "nvidia-rtx-pro-6000", "runtune-trainer-rtx-pro-6000"),
        (Workload.ingest, None, "runtune-ingest"),
        (Workload.evaluate, None, "runtune-evaluate"),
    ],
)
def test_each_request_runs_its_workloads_job(fake, launcher, workload, gpu, job) -> None:
    server, _ = fake
    execution = launcher.launch(LaunchRequest(job_id="item-1", workload=workload, gpu=gpu))

    [sent] = server.requests
    assert sent.path == f"/v2/{JOBS}/{job}:run"
    assert execution == f"{JOBS}/{job}/executions/{job}-abc12"
    # Executions of every job of the deployment are followed and cancelled by the same launcher.
    server.executions[execution] = {"name": execution, "runningCount": 1}
    assert launcher.status(execution).state is ExecutionState.running
    launcher.cancel(execution)
    assert server.requests[-1].path == f"/v2/{execution}:cancel"


@pytest.mark.parametrize(
    "request_",
    [
        LaunchRequest(job_id="ftjob-1"),  # training without a GPU
        LaunchRequest(job_id="ftjob-1", gpu="nvidia-h100-80gb"),  # not in the GPU table
        LaunchRequest(job_id="file-1", workload=Workload.ingest, gpu=L4),  # a CPU job given a GPU
        LaunchRequest(job_id="ftjob-1", gpu=L4, env={"RUNTUNE_TASK_DEADLINE_S": "9"}),  # the launcher's own
    ],
)
def test_requests_naming_no_deployed_job_are_refused(fake, launcher, request_) -> None:
    server, _ = fake
    with pytest.raises(ValueError):
        launcher.launch(request_)
    assert server.requests == []


@pytest.mark.parametrize("env_name", ["HF_TOKEN", "wandb_api_key", "DbPassword", "MY_SECRET", "GOOGLE_CREDENTIALS"])
def test_secret_looking_env_is_refused_before_any_request(fake, launcher, env_name) -> None:
    server, _ = fake
    with pytest.raises(ValueError, match=env_name) as refused:
        launcher.launch(LaunchRequest(job_id="ftjob-1", env={env_name: "hf_abcdefghijklmnop"}, gpu=L4))
    assert "hf_abcdefghijklmnop" not in str(refused.value)
    assert server.requests == []


def test_reserved_and_malformed_requests_are_refused(fake, launcher) -> None:
    server, _ = fake
    for bad in (
        LaunchRequest(job_id="ftjob-1", env={"CLOUD_RUN_EXECUTION": "x"}, gpu=L4),
        LaunchRequest(job_id="../etc", gpu=L4),
        LaunchRequest(job_id="ftjob-1", timeout_seconds=0, gpu=L4),
        LaunchRequest(job_id="ftjob-1", task_count=0, gpu=L4),
    ):
        with pytest.raises(ValueError):
            launcher.launch(bad)
    assert server.requests == []


def test_launch_failure_is_upstream_unavailable(fake, launcher) -> None:
    server, _ = fake
    server.fail_run_with = 403
    with pytest.raises(UpstreamUnavailable):
        launcher.launch(LaunchRequest(job_id="ftjob-1", gpu=L4))


def test_cancel_posts_to_the_execution(fake, launcher) -> None:
    server, _ = fake
    server.executions[EXECUTION] = {"name": EXECUTION, "runningCount": 1}

    launcher.cancel(EXECUTION)

    [sent] = server.requests
    assert (sent.method, sent.path) == ("POST", f"/v2/{EXECUTION}:cancel")


def test_cancel_of_a_missing_or_foreign_execution_is_a_no_op(fake, launcher) -> None:
    server, _ = fake
    launcher.cancel(f"{JOB_PATH}/executions/{JOB}-gone1")
    launcher.cancel("local/ftjob-1/abcd")
    assert [r.path for r in server.requests] == [f"/v2/{JOB_PATH}/executions/{JOB}-gone1:cancel"]


def test_cancel_of_a_finished_execution_is_a_no_op(fake, launcher) -> None:
    server, _ = fake
    server.executions[EXECUTION] = {"name": EXECUTION, "succeededCount": 1, "completionTime": DONE}

    launcher.cancel(EXECUTION)  # refused with FAILED_PRECONDITION (a plain 400 over REST)

    assert [(r.method, r.path) for r in server.requests] == [
        ("POST", f"/v2/{EXECUTION}:cancel"),
        ("GET", f"/v2/{EXECUTION}"),
    ]


def test_cancel_failure_of_a_running_execution_is_upstream_unavailable(fake, launcher) -> None:
    server, _ = fake
    server.executions[EXECUTION] = {"name": EXECUTION, "runningCount": 1}
    server.fail_cancel_with = 403
    with pytest.raises(UpstreamUnavailable):
        launcher.cancel(EXECUTION)


def _execution(**fields: Any) -> dict[str, Any]:
    return {"name": EXECUTION, "taskCount": 1, "template": {"timeout": "3600s"}, **fields}


def _completed(state: str, message: str = "", **reason: str) -> dict[str, Any]:
    return {"type": "Completed", "state": state, "message": message, **reason}


DONE = "2025-01-01T12:00:00Z"


@pytest.mark.parametrize(
    ("execution", "state", "reason", "exit_code"),
    [
        pytest.param(_execution(), ExecutionState.pending, None, None, id="pending"),
        pytest.param(_execution(runningCount=1), ExecutionState.running, None, None, id="running"),
        pytest.param(
            _execution(succeededCount=1, completionTime=DONE, conditions=[_completed("CONDITION_SUCCEEDED")]),
            ExecutionState.succeeded,
            None,
            0,
            id="succeeded",
        ),
        pytest.param(
            _execution(
                failedCount=1,
                completionTime=DONE,
                conditions=[
                    {"type": "ResourcesAvailable", "state": "CONDITION_SUCCEEDED"},
                    _completed(
                        "CONDITION_FAILED",
                        f"Task {JOB}-abc12-task0 failed with message: The container exited with an exit code of 3.",
                        executionReason="NON_ZERO_EXIT_CODE",
                    ),
                ],
            ),
            ExecutionState.failed,
            "exit code 3",
            3,
            id="exit-code",
        ),
        pytest.param(
            _execution(
                failedCount=1,
                completionTime=DONE,
                conditions=[_completed("CONDITION_FAILED", "The configured timeout was reached.")],
            ),
            ExecutionState.failed,
            "timeout after 3600s",
            None,
            id="timeout",
        ),
        pytest.param(
            _execution(
                completionTime=DONE,
                conditions=[_completed("CONDITION_FAILED", reason="CONTAINER_MISSING")],
            ),
            ExecutionState.failed,
            "container_missing",
            None,
            id="condition-reason",
        ),
        pytest.param(
            _execution(
                cancelledCount=1,
                completionTime=DONE,
                conditions=[_completed("CONDITION_FAILED", "cancelled", executionReason="CANCELLED")],
            ),
            ExecutionState.cancelled,
            "cancelled",
            None,
            id="cancelled",
        ),
        pytest.param(
            _execution(runningCount=1, conditions=[_completed("CONDITION_RECONCILING", executionReason="CANCELLING")]),
            ExecutionState.running,
            "cancelling",
            None,
            id="cancelling",
        ),
    ],
)
def test_status_maps_the_execution(fake, launcher, execution, state, reason, exit_code) -> None:
    server, _ = fake
    server.executions[EXECUTION] = execution

    status = launcher.status(EXECUTION)

    assert (status.name, status.state, status.reason, status.exit_code) == (
        EXECUTION,
        state,
        reason,
        exit_code,
    )
    [sent] = server.requests
    assert (sent.method, sent.path) == ("GET", f"/v2/{EXECUTION}")


def test_status_of_a_missing_execution_is_unknown(fake, launcher) -> None:
    status = launcher.status(f"{JOB_PATH}/executions/{JOB}-gone1")
    assert status.state is ExecutionState.unknown
    assert status.reason == "execution not found"


def test_status_of_a_foreign_execution_is_unknown_without_a_request(fake, launcher) -> None:
    server, _ = fake
    for foreign in (
        "local/ftjob-1/abcd",
        f"projects/other-proj/locations/{REGION}/jobs/{JOB}/executions/{JOB}-abc12",
        f"{JOBS}/someone-elses-job/executions/x-abc12",
        f"{JOBS}/runtune-/executions/x",
    ):
        assert launcher.status(foreign).state is ExecutionState.unknown
    assert server.requests == []


# -- the training service's launches, against the fake and the Firestore emulator ---------------------

SMALL, LARGE = "tiny-gemma-3-vision", "google/gemma-3-27b-it"
RTX = "nvidia-rtx-pro-6000"


def _job_service(emulators, launcher: CloudRunJobLauncher, offered: list[str] | None = None):
    from runtune.adapters.firestore import FirestoreMetadataStore
    from services.training.jobs_service import JobService, SchedulingPolicy

    store = FirestoreMetadataStore.for_project(emulators.project_id)
    policy = SchedulingPolicy(max_running_per_user=5, heartbeat_stale_s=120, start_timeout_s=900, task_timeout_s=3600)
    return store, JobService(store, launcher, policy, profile="gcp", offered_gpus=offered)


def _ready_dataset(store, uid: str) -> str:
    dataset = pets_dataset(uid)
    store.set(f"datasets/{dataset.id}", dataset.to_document())
    return dataset.id


def _large_job(store, uid: str, **fields: Any):
    """A job of LARGE on a new ready dataset of `uid`'s (`fields`: the job's others)."""
    from runtune.schemas.jobs import Job

    return Job(
        id=f"ftjob-{uuid.uuid4().hex[:12]}", owner=uid, model=LARGE, training_file=_ready_dataset(store, uid), **fields
    )


def _runs(server: FakeCloudRun) -> list[str]:
    return [r.path.removeprefix(f"/v2/{JOBS}/") for r in server.requests if r.path.endswith(":run")]


@pytest.mark.emulators
@pytest.mark.parametrize(
    ("model", "gpu", "job"), [(SMALL, L4, "runtune-trainer-l4"), (LARGE, RTX, "runtune-trainer-rtx-pro-6000")]
)
def test_the_job_service_runs_the_trainer_job_of_the_gpu_the_estimate_chose(
    emulators, fake, launcher, model, gpu, job
) -> None:
    from runtune.schemas.jobs import CreateJobRequest

    server, _ = fake
    store, service = _job_service(emulators, launcher)
    uid = f"user-{uuid.uuid4().hex[:8]}"
    # Batch 4: a 27B-class run that does not fit an L4 (at `auto`'s batch 1 it would).
    request = CreateJobRequest.model_validate(
        {"model": model, "training_file": _ready_dataset(store, uid), "hyperparameters": {"batch_size": 4}}
    )
    created = service.create(uid, request, None)

    assert created.gpu == gpu
    # A 27B-class model at batch 4 never reaches the L4's job: the estimate put it on the RTX PRO 6000.
    assert _runs(server) == [f"{job}:run"]
    stored = service.jobs.get(created.id)
    assert stored is not None and stored.execution_name == f"{JOBS}/{job}/executions/{job}-abc12"


@pytest.mark.emulators
def test_jobs_stored_without_a_gpu_are_estimated_again_at_launch(emulators, fake, launcher) -> None:
    from runtune.schemas.jobs import JobStatus

    server, _ = fake
    store, service = _job_service(emulators, launcher)
    _, l4_only = _job_service(emulators, launcher, offered=[L4])
    for owner_service, expected in ((service, ["runtune-trainer-rtx-pro-6000:run"]), (l4_only, [])):
        uid = f"user-{uuid.uuid4().hex[:8]}"
        # As a job document written before the GPU was recorded: no `gpu` field at all.
        job = _large_job(store, uid, hyperparameters={"batch_size": 4})  # does not fit an L4 (see above)
        document = job.model_copy(update={"status": JobStatus.queued}).to_document()
        document.pop("gpu")
        store.set(f"jobs/{job.id}", document)
        server.requests.clear()

        owner_service.dispatch(uid)

        assert _runs(server) == expected
        launched = owner_service.jobs.get(job.id)
        assert launched is not None
        if expected:
            assert launched.gpu == RTX and launched.execution_name
        else:  # the deployment has no GPU this run fits: failed with the estimate's reason, nothing launched
            assert launched.status is JobStatus.failed and launched.error is not None
            assert launched.error.code == "does_not_fit" and "NVIDIA L4" in launched.error.message


@pytest.mark.emulators
def test_a_job_queued_for_a_gpu_no_longer_offered_fails_without_a_launch(emulators, fake, launcher) -> None:
    from runtune.schemas.jobs import JobStatus

    server, _ = fake
    store, service = _job_service(emulators, launcher, offered=[L4])
    uid = f"user-{uuid.uuid4().hex[:8]}"
    job = _large_job(store, uid, status=JobStatus.queued, gpu=RTX)
    store.set(f"jobs/{job.id}", job.to_document())

    service.dispatch(uid)

    assert _runs(server) == []
    failed = service.jobs.get(job.id)
    assert failed is not None and failed.status is JobStatus.failed and failed.error is not None
    assert failed.error.code == "gpu_not_offered" and RTX in failed.error.message
