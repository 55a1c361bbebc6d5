"""Which `ft:` models a job may continue, against the Firestore emulator: the caller's own succeeded
LoRA model only (another user's, an unknown or a deleted one is the 404 of any unknown model; one
whose job has not succeeded, a checkpoint or a full fine-tune a 400 naming `model`); the job stores
its lineage and a plan on the root base from the parent's adapter; a parent deleted before the job
is planned fails it; the continued model is served on the root base."""

from __future__ import annotations

import uuid

import pytest

from runtune.blob_layout import ADAPTER, export_folder
from runtune.errors import InvalidRequest, NotFound
from runtune.inference.resolver import ModelResolver
from runtune.jobs.removal import mark_model_deleted
from runtune.schemas import Dataset, DatasetStatus, TaskKind
from runtune.schemas.common import new_id
from runtune.schemas.jobs import CreateJobRequest, Job, JobStatus, Lineage, TrainConfig, tuned_model_id
from tests.integration.test_job_reconciler import ScriptedLauncher

pytestmark = pytest.mark.emulators

ROOT = "tiny-gemma-3-vision"


@pytest.fixture
def service(emulators):
    from runtune.adapters.firestore import FirestoreMetadataStore
    from services.training.jobs_service import JobService, SchedulingPolicy

    store = FirestoreMetadataStore.for_project(emulators.project_id)
    policy = SchedulingPolicy(max_running_per_user=1, heartbeat_stale_s=120, start_timeout_s=900, task_timeout_s=3600)
    return store, JobService(store, ScriptedLauncher(), policy, profile="local")


def _dataset(store, uid: str, status: DatasetStatus = DatasetStatus.ready) -> str:
    dataset = Dataset(
        id=new_id("file"),
        owner=uid,
        name="pets",
        status=status,
        task_kind=TaskKind.classification,
        modality="vision",
        splits={"train": 40} if status is DatasetStatus.ready else {},
        labels=["cat", "dog"],
    )
    store.set(f"datasets/{dataset.id}", dataset.to_document())
    return dataset.id


def _parent(store, uid: str, *, status: JobStatus = JobStatus.succeeded, method: str = "qlora") -> Job:
    """A job as its trainer leaves it: its model, its adapter folder and a plan of LoRA rank 8."""
    job_id = new_id("ftjob")
    job = Job(
        id=job_id,
        owner=uid,
        model=ROOT,
        training_file="file-x",
        status=status,
        fine_tuned_model=tuned_model_id(ROOT, job_id) if status is JobStatus.succeeded else None,
        plan=TrainConfig(job_id=job_id, owner=uid, model=ROOT, dataset_id="file-x", method=method, lora_rank=8),  # type: ignore[arg-type]
        lineage=Lineage.of_base(ROOT),
        runtune={"export": {"merged" if method == "full" else ADAPTER: export_folder(uid, job_id, ADAPTER)}},
    )
    store.set(f"jobs/{job.id}", job.to_document())
    return job


def _user() -> str:
    return f"user-{uuid.uuid4().hex[:8]}"


def test_a_job_continues_the_callers_own_model_with_its_lineage_and_plan(service) -> None:
    store, jobs = service
    uid = _user()
    parent = _parent(store, uid)
    assert parent.fine_tuned_model

    job = jobs.create(uid, CreateJobRequest(model=parent.fine_tuned_model, training_file=_dataset(store, uid)), None)

    assert job.model == parent.fine_tuned_model
    assert job.lineage == Lineage(root=ROOT, parent=parent.fine_tuned_model, chain=[ROOT, parent.fine_tuned_model])
    assert job.plan is not None and job.plan.model == ROOT
    assert job.plan.parent_model == parent.fine_tuned_model
    assert job.plan.parent_adapter == export_folder(uid, parent.id, ADAPTER)
    assert job.options.lora.rank == job.plan.lora_rank == 8  # the parent adapter's shape

    # Once it succeeds, its model is served on the root base, with the whole chain as its lineage.
    model = tuned_model_id(ROOT, job.id)
    store.update(
        f"jobs/{job.id}",
        {
            "status": "succeeded",
            "fine_tuned_model": model,
            "runtune": {"export": {ADAPTER: export_folder(uid, job.id, ADAPTER)}},
        },
    )
    target = ModelResolver(store).resolve(uid, model)
    assert target.spec.id == ROOT and target.adapter is not None and target.adapter.job_id == job.id
    grandchild = jobs.create(uid, CreateJobRequest(model=model, training_file=_dataset(store, uid)), None)
    assert grandchild.lineage is not None and grandchild.lineage.chain == [ROOT, parent.fine_tuned_model, model]


def test_only_the_callers_own_succeeded_adapter_may_be_continued(service) -> None:
    store, jobs = service
    uid, stranger = _user(), _user()
    parent = _parent(store, uid)
    assert parent.fine_tuned_model
    theirs = _dataset(store, stranger)

    def refused(model: str, who: str = uid, **options: object) -> NotFound | InvalidRequest:
        training = theirs if who == stranger else _dataset(store, who)
        request = CreateJobRequest.model_validate(
            {
                "model": model,
                "training_file": training,
                "method": {"type": "supervised", "supervised": {"runtune": options}},
            }
        )
        with pytest.raises((NotFound, InvalidRequest)) as caught:
            jobs.create(who, request, None)
        assert caught.value.param is not None and caught.value.param.startswith(("model", "method"))
        return caught.value  # type: ignore[return-value]

    unknown = f"The model '{parent.fine_tuned_model}' does not exist or you do not have access to it."
    assert isinstance(error := refused(parent.fine_tuned_model, stranger), NotFound) and error.message == unknown
    assert isinstance(refused(tuned_model_id(ROOT, "ftjob-nope")), NotFound)
    assert isinstance(refused(tuned_model_id("tiny-gemma-3-text", parent.id)), NotFound)  # not its id
    running = _parent(store, uid, status=JobStatus.running)
    error = refused(tuned_model_id(ROOT, running.id))
    assert isinstance(error, InvalidRequest) and error.code == "model_not_ready" and "running" in error.message
    assert refused(f"{parent.fine_tuned_model}:ckpt-step-4").code == "model_not_continuable"
    full = _parent(store, uid, method="full")
    assert refused(tuned_model_id(ROOT, full.id)).code == "model_not_continuable"
    rank = refused(parent.fine_tuned_model, lora={"rank": 32})
    assert rank.param == "method.supervised.runtune.lora.rank"
    assert refused(parent.fine_tuned_model, method="full").param == "method.supervised.runtune.method"
    assert refused("no-such-base").param == "model"

    mark_model_deleted(store, parent)
    assert isinstance(refused(parent.fine_tuned_model), NotFound)


def test_a_parent_deleted_before_the_job_is_planned_fails_it(service) -> None:
    store, jobs = service
    uid = _user()
    parent = _parent(store, uid)
    assert parent.fine_tuned_model
    processing = _dataset(store, uid, DatasetStatus.processing)
    job = jobs.create(uid, CreateJobRequest(model=parent.fine_tuned_model, training_file=processing), None)
    assert job.status is JobStatus.validating_files and job.plan is None

    mark_model_deleted(store, parent)
    store.update(f"datasets/{processing}", {"status": "ready", "splits": {"train": 40}})
    failed = jobs.get(uid, job.id)

    assert failed.status is JobStatus.failed and failed.error is not None
    assert failed.error.code == "model_not_found" and failed.error.param == "model"
