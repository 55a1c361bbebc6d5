"""The training service's reconciler against the Firestore emulator, with a launcher that answers
per execution (a stand-in for Cloud Run's Admin API): failures stay per job, and jobs waiting for
their files move on from the datasets' documents."""

from __future__ import annotations

import time
import uuid

import pytest

from runtune.ports.launcher import ExecutionState, ExecutionStatus, LaunchRequest
from runtune.schemas import Dataset, DatasetStatus
from runtune.schemas.common import ApiError, new_id, now_ts
from runtune.schemas.jobs import CreateJobRequest, Job, JobStatus
from tests.support import pets_dataset

pytestmark = pytest.mark.emulators

MODEL = "tiny-gemma-3-vision"


class ScriptedLauncher:
    """Executions named by the test: `status` raises for those in `broken`, answers `states` else."""

    def __init__(self) -> None:
        self.broken: set[str] = set()
        self.states: dict[str, ExecutionStatus] = {}
        self.launched: list[str] = []
        self.cancelled: list[str] = []

    def launch(self, request: LaunchRequest) -> str:
        self.launched.append(request.job_id)
        return f"local/{request.job_id}/run"

    def cancel(self, execution_name: str) -> None:
        self.cancelled.append(execution_name)

    def status(self, execution_name: str) -> ExecutionStatus:
        if execution_name in self.broken:
            raise RuntimeError("the Admin API answered 503")
        return self.states.get(execution_name, ExecutionStatus(execution_name, ExecutionState.running))


def job_service(emulators, *, max_running_per_user: int):
    """The jobs service on the Firestore emulator, launching through a `ScriptedLauncher`."""
    from runtune.adapters.firestore import FirestoreMetadataStore
    from services.training.jobs_service import JobService, SchedulingPolicy

    store = FirestoreMetadataStore.for_project(emulators.project_id)
    launcher = ScriptedLauncher()
    policy = SchedulingPolicy(
        max_running_per_user=max_running_per_user, heartbeat_stale_s=120, start_timeout_s=900, task_timeout_s=3600
    )
    return store, launcher, JobService(store, launcher, policy, profile="local")


@pytest.fixture
def service(emulators):
    return job_service(emulators, max_running_per_user=5)


def _uid() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def _dataset(store, uid: str, status: DatasetStatus, error: ApiError | None = None) -> str:
    dataset = pets_dataset(uid, status, error=error)
    store.set(f"datasets/{dataset.id}", dataset.to_document())
    return dataset.id


def _launched_job(store, uid: str, execution: str, *, age_s: int = 0) -> str:
    job = Job(
        id=new_id("ftjob"),
        created_at=now_ts() - age_s,
        owner=uid,
        model=MODEL,
        training_file="file-x",
        status=JobStatus.queued,
        execution_name=execution,
        heartbeat_at=time.time() - 7200,  # past the start allowance: the pass asks the launcher
        gpu="nvidia-l4",
    )
    store.set(f"jobs/{job.id}", job.to_document())
    return job.id


def test_one_failing_status_call_does_not_stop_the_pass(service) -> None:
    store, launcher, jobs = service
    bad, good = f"exec-{uuid.uuid4().hex[:6]}", f"exec-{uuid.uuid4().hex[:6]}"
    launcher.broken.add(bad)
    launcher.states[good] = ExecutionStatus(good, ExecutionState.failed, reason="exit code 3", exit_code=3)
    # The broken one first (jobs are read oldest first), so an aborted pass would never reach the other.
    broken_job = _launched_job(store, _uid(), bad, age_s=60)
    lost_job = _launched_job(store, _uid(), good)

    ended = jobs.reconcile()

    assert lost_job in ended and broken_job not in ended
    lost = jobs.jobs.get(lost_job)
    assert lost is not None and lost.status is JobStatus.failed and lost.error is not None
    assert lost.error.code == "trainer_exited"
    kept = jobs.jobs.get(broken_job)
    assert kept is not None and kept.status is JobStatus.queued  # checked again at the next pass


def test_a_job_waits_for_its_file_then_queues_with_auto_resolved(service) -> None:
    store, launcher, jobs = service
    uid = _uid()
    file_id = _dataset(store, uid, DatasetStatus.processing)
    created = jobs.create(uid, CreateJobRequest(model=MODEL, training_file=file_id), None)
    assert created.status is JobStatus.validating_files and created.gpu is None
    assert created.hyperparameters.n_epochs == "auto"

    jobs.reconcile()
    assert jobs.get(uid, created.id).status is JobStatus.validating_files and launcher.launched == []

    processing = Dataset.model_validate(store.get(f"datasets/{file_id}"))
    ready = processing.model_copy(update={"status": DatasetStatus.ready, "splits": {"train": 40}, "modality": "vision"})
    store.set(f"datasets/{file_id}", ready.to_document())
    jobs.reconcile()

    queued = jobs.get(uid, created.id)
    assert queued.status is JobStatus.queued and queued.gpu == "nvidia-l4"
    assert isinstance(queued.hyperparameters.n_epochs, int) and launcher.launched == [created.id]


def test_checks_that_need_the_file_fail_the_job_once_it_is_ready(service) -> None:
    store, launcher, jobs = service
    uid = _uid()
    file_id = _dataset(store, uid, DatasetStatus.processing)
    created = jobs.create(uid, CreateJobRequest(model="tiny-gemma-3-text", training_file=file_id), None)
    assert created.status is JobStatus.validating_files

    dataset = Dataset.model_validate(store.get(f"datasets/{file_id}"))
    store.set(
        f"datasets/{file_id}",
        dataset.model_copy(update={"status": DatasetStatus.ready, "splits": {"train": 40}}).to_document(),
    )

    failed = jobs.get(uid, created.id)
    assert failed.status is JobStatus.failed and failed.error is not None
    assert failed.error.param == "model" and "reads text only" in failed.error.message
    assert launcher.launched == []


def test_a_failed_validation_file_fails_the_job_naming_it(service) -> None:
    store, _, jobs = service
    uid = _uid()
    training = _dataset(store, uid, DatasetStatus.processing)
    validation = _dataset(store, uid, DatasetStatus.processing)
    request = CreateJobRequest(model=MODEL, training_file=training, validation_file=validation)
    created = jobs.create(uid, request, None)
    store.set(
        f"datasets/{validation}",
        Dataset.model_validate(store.get(f"datasets/{validation}"))
        .model_copy(
            update={
                "status": DatasetStatus.failed,
                "error": ApiError(code="invalid_json", message="bad.jsonl, line 2: not JSON"),
            }
        )
        .to_document(),
    )

    jobs.reconcile()

    failed = jobs.get(uid, created.id)
    assert failed.status is JobStatus.failed and failed.error is not None
    assert failed.error.code == "invalid_validation_file" and failed.error.param == "validation_file"
    assert validation in failed.error.message and "line 2: not JSON" in failed.error.message


class RaceAfterKeyStore:
    """The metadata store, with a competing request run right after the first write that stores an
    Idempotency-Key: the worst moment for a retry racing the request that made the key."""

    def __init__(self, inner, competitor) -> None:
        self._inner, self._competitor, self._raced = inner, competitor, False

    def __getattr__(self, name: str):
        return getattr(self._inner, name)

    def _after(self, paths: list[str]) -> None:
        if not self._raced and any(path.startswith("idempotency_keys/") for path in paths):
            self._raced = True
            self._competitor()

    def create(self, path: str, data: dict) -> None:
        self._inner.create(path, data)
        self._after([path])

    def create_many(self, items) -> None:
        self._inner.create_many(items)
        self._after([path for path, _ in items])


def test_a_retry_racing_the_first_request_of_a_key_gets_its_job(emulators) -> None:
    from runtune.adapters.firestore import FirestoreMetadataStore
    from services.training.jobs_service import JobService, SchedulingPolicy

    inner = FirestoreMetadataStore.for_project(emulators.project_id)
    uid = _uid()
    request = CreateJobRequest(model=MODEL, training_file=_dataset(inner, uid, DatasetStatus.ready))
    policy = SchedulingPolicy(max_running_per_user=5, heartbeat_stale_s=120, start_timeout_s=900, task_timeout_s=3600)
    answers: list[Job] = []
    store = RaceAfterKeyStore(inner, lambda: answers.append(racing.create(uid, request, "key-1")))
    racing = JobService(store, ScriptedLauncher(), policy, profile="local")
    first = JobService(store, ScriptedLauncher(), policy, profile="local").create(uid, request, "key-1")

    assert [answer.id for answer in answers] == [first.id]
    assert [job.id for job in _jobs_of(inner, uid)] == [first.id]


def _jobs_of(store, uid: str) -> list[Job]:
    from runtune import owned

    return owned.jobs(store).list_owned(uid, limit=10, after=None)
