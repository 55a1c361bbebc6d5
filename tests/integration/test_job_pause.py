"""Pause and resume against the Firestore emulator: the jobs service, the trainer's reporter and the
reconciler each move a job only through a conditional write, a paused job holds no slot, and it is
left only by resume or cancel."""

from __future__ import annotations

import uuid

import pytest

from runtune.errors import InvalidRequest, NotFound
from runtune.ports.launcher import ExecutionState, ExecutionStatus
from runtune.schemas import Dataset, DatasetStatus
from runtune.schemas.jobs import CreateJobRequest, Job, JobStatus
from runtune.training.reporting import JobReporter
from tests.integration.test_job_reconciler import job_service
from tests.support import pets_dataset

pytestmark = pytest.mark.emulators

MODEL = "tiny-gemma-3-vision"


@pytest.fixture
def service(emulators):
    # One slot per user, as the e2e platform runs: what a paused job frees is visible.
    return job_service(emulators, max_running_per_user=1)


def _user_with_file(store, status: DatasetStatus = DatasetStatus.ready) -> tuple[str, str]:
    uid = f"user-{uuid.uuid4().hex[:8]}"
    dataset = pets_dataset(uid, status)
    store.set(f"datasets/{dataset.id}", dataset.to_document())
    return uid, dataset.id


def _job(jobs, job_id: str) -> Job:
    job = jobs.jobs.get(job_id)
    assert job is not None
    return job


def _events(jobs, job_id: str) -> list[str]:
    return [event.message for event in jobs.events.read(job_id)]


def test_a_job_not_started_is_paused_at_once_frees_its_slot_and_cancels_at_once(service) -> None:
    store, launcher, jobs = service
    uid, file_id = _user_with_file(store)
    first = jobs.create(uid, CreateJobRequest(model=MODEL, training_file=file_id), None)
    second = jobs.create(uid, CreateJobRequest(model=MODEL, training_file=file_id), None)
    assert launcher.launched == [first.id]  # one slot: the second waits
    execution = _job(jobs, first.id).execution_name

    paused = jobs.pause(uid, first.id)

    assert paused.status is JobStatus.paused
    assert launcher.cancelled == [execution]  # launched, its trainer not started: stopped
    assert launcher.launched == [first.id, second.id]  # the slot went to the waiting job
    # A trainer that starts late finds the job paused and does nothing.
    late = JobReporter(store, first.id)
    try:
        assert late.running(execution, 0) is False
    finally:
        late.close()
    jobs.reconcile()
    assert _job(jobs, first.id).status is JobStatus.paused and launcher.launched.count(first.id) == 1
    assert jobs.pause(uid, first.id).status is JobStatus.paused  # idempotent

    cancelled = jobs.cancel(uid, first.id)
    assert cancelled.status is JobStatus.cancelled and cancelled.finished_at is not None
    assert launcher.cancelled == [execution]  # nothing ran, nothing more to stop
    for action in (jobs.pause, jobs.resume):
        with pytest.raises(InvalidRequest) as refused:
            action(uid, first.id)
        assert refused.value.code == "job_finished" and refused.value.status_code == 400


def test_a_running_job_pauses_through_its_trainer_and_resumes_from_queued(service) -> None:
    store, launcher, jobs = service
    uid, file_id = _user_with_file(store)
    job = jobs.create(uid, CreateJobRequest(model=MODEL, training_file=file_id), None)
    execution = _job(jobs, job.id).execution_name
    trainer = JobReporter(store, job.id, cancel_every_s=0)
    try:
        assert trainer.running(execution, 0) and trainer.stop_requested() is None

        asked = jobs.pause(uid, job.id)
        # Still running (and holding its slot) until the trainer has checkpointed and stopped.
        assert asked.status is JobStatus.running and _job(jobs, job.id).pause_requested
        assert jobs.pause(uid, job.id).status is JobStatus.running and launcher.cancelled == []
        with pytest.raises(InvalidRequest) as early:
            jobs.resume(uid, job.id)
        assert early.value.code == "job_not_paused" and "pause is under way" in early.value.message
        assert trainer.stop_requested() == "pause"

        assert trainer.paused("Paused at step 3") is True
    finally:
        trainer.close()
    paused = _job(jobs, job.id)
    assert paused.status is JobStatus.paused and not paused.pause_requested
    assert "Paused at step 3" in _events(jobs, job.id)
    # The execution ended on purpose: the reconciler neither fails nor relaunches the job, and
    # a write of the trainer's end does not override the pause.
    launcher.states[execution] = ExecutionStatus(execution, ExecutionState.succeeded, exit_code=0)
    assert jobs.reconcile() == [] and _job(jobs, job.id).status is JobStatus.paused
    assert JobReporter(store, job.id).finish(JobStatus.failed, "late") is False
    assert launcher.launched == [job.id]

    resumed = jobs.resume(uid, job.id)

    assert resumed.status is JobStatus.queued and launcher.launched == [job.id, job.id]
    relaunched = _job(jobs, job.id)
    assert relaunched.execution_name and not relaunched.pause_requested and relaunched.heartbeat_at
    assert "Job resumed" in _events(jobs, job.id)
    with pytest.raises(NotFound):
        jobs.pause("someone-else", job.id)
    with pytest.raises(NotFound):
        jobs.resume("someone-else", job.id)


def test_a_trainer_gone_while_pausing_leaves_the_job_paused_not_failed(service) -> None:
    store, launcher, jobs = service
    uid, file_id = _user_with_file(store)
    job = jobs.create(uid, CreateJobRequest(model=MODEL, training_file=file_id), None)
    execution = _job(jobs, job.id).execution_name
    assert execution is not None
    store.update(f"jobs/{job.id}", {"status": "running"})
    jobs.pause(uid, job.id)
    # Killed before it could record the pause (exit 137): resume takes the newest checkpoint.
    launcher.states[execution] = ExecutionStatus(execution, ExecutionState.failed, reason="SIGKILL", exit_code=137)

    assert jobs.reconcile() == []

    after = _job(jobs, job.id)
    assert after.status is JobStatus.paused and after.error is None and not after.pause_requested


def test_cancel_outranks_a_pause_under_way(service) -> None:
    store, _, jobs = service
    uid, file_id = _user_with_file(store)
    job = jobs.create(uid, CreateJobRequest(model=MODEL, training_file=file_id), None)
    trainer = JobReporter(store, job.id, cancel_every_s=0)
    try:
        trainer.running(_job(jobs, job.id).execution_name, 0)
        jobs.pause(uid, job.id)
        assert trainer.stop_requested() == "pause"
        jobs.cancel(uid, job.id)
        with pytest.raises(InvalidRequest) as refused:
            jobs.pause(uid, job.id)
        assert refused.value.code == "job_cancelling"

        # The trainer's pause write is conditional: it sees the cancel and says so.
        assert trainer.paused("Paused at step 2") is False and trainer.stop_requested() == "cancel"
        assert _job(jobs, job.id).status is JobStatus.running
        assert trainer.finish(JobStatus.cancelled, "Cancelled at step 2") is True
    finally:
        trainer.close()
    assert _job(jobs, job.id).status is JobStatus.cancelled


def test_a_job_paused_while_validating_files_waits_until_resumed(service) -> None:
    store, launcher, jobs = service
    uid, file_id = _user_with_file(store, DatasetStatus.processing)
    job = jobs.create(uid, CreateJobRequest(model=MODEL, training_file=file_id), None)
    assert jobs.pause(uid, job.id).status is JobStatus.paused

    dataset = Dataset.model_validate(store.get(f"datasets/{file_id}"))
    store.set(
        f"datasets/{file_id}",
        dataset.model_copy(update={"status": DatasetStatus.ready, "splits": {"train": 40}}).to_document(),
    )
    jobs.reconcile()
    assert jobs.get(uid, job.id).status is JobStatus.paused and launcher.launched == []

    resumed = jobs.resume(uid, job.id)
    assert resumed.status is JobStatus.queued and resumed.gpu is not None
    assert isinstance(resumed.hyperparameters.n_epochs, int) and launcher.launched == [job.id]


def test_a_resumed_job_keeps_its_plan_and_the_reasons_it_shows(service) -> None:
    store, launcher, jobs = service
    uid, file_id = _user_with_file(store)
    job = jobs.create(uid, CreateJobRequest(model=MODEL, training_file=file_id), None)
    planned = _job(jobs, job.id)
    assert planned.plan is not None and set(planned.auto_hyperparameters) == {
        "n_epochs",
        "batch_size",
        "learning_rate_multiplier",
        "method",  # `auto` method: bf16 LoRA or QLoRA, with the reason
    }
    jobs.pause(uid, job.id)
    # The set grows meanwhile: planned again, `auto` would pick other numbers than its checkpoints hold.
    dataset = Dataset.model_validate(store.get(f"datasets/{file_id}"))
    store.set(f"datasets/{file_id}", dataset.model_copy(update={"splits": {"train": 4000}}).to_document())

    jobs.resume(uid, job.id)

    resumed = _job(jobs, job.id)
    assert resumed.status is JobStatus.queued and launcher.launched == [job.id, job.id]
    assert resumed.plan == planned.plan and resumed.hyperparameters == planned.hyperparameters
    assert resumed.auto_hyperparameters == planned.auto_hyperparameters
