"""Fixtures of the trainer tests: the tiny models (built once per session, into the folder the
registry resolves `tiny-*` ids to) and helpers that write a job and its dataset to the emulators."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jobs.trainer.recipe import Environment
from runtune import wiring
from runtune.adapters.firestore import FirestoreMetadataStore
from runtune.adapters.gcs import GcsBlobStore
from runtune.adapters.permitted import PermittedBlobStore, PermittedMetadataStore
from runtune.estimate import GPU_NAMES
from runtune.jobs import plan
from runtune.models.tiny import TINY_IDS, ensure_tiny_model, tiny_dir
from runtune.schemas import Dataset, DatasetStatus, Job, JobStatus, TaskKind
from runtune.schemas.jobs import RuntuneOptions, job_path
from runtune.settings import CommonSettings


@pytest.fixture(scope="session")
def local_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("runtune-local")
    patch = pytest.MonkeyPatch()
    patch.setenv("RUNTUNE_LOCAL_DIR", str(root))
    for model_id in TINY_IDS:
        ensure_tiny_model(model_id, tiny_dir(root, model_id))
    yield root
    patch.undo()


@pytest.fixture(scope="session")
def store(emulators: Any) -> FirestoreMetadataStore:
    return FirestoreMetadataStore.for_project(emulators.project_id)


@pytest.fixture(scope="session")
def blobs(emulators: Any) -> GcsBlobStore:
    blob_store = GcsBlobStore.for_bucket(emulators.project_id, emulators.bucket)
    blob_store.ensure_bucket()
    return blob_store


def new_dataset(store: FirestoreMetadataStore, uid: str, *, modality: str, task: TaskKind, labels: list[str]) -> str:
    dataset_id = f"ds-{uuid.uuid4().hex[:12]}"
    dataset = Dataset(
        id=dataset_id,
        owner=uid,
        name="test set",
        status=DatasetStatus.ready,
        task_kind=task,
        modality=modality,  # type: ignore[arg-type]
        labels=labels,
    )
    store.set(f"datasets/{dataset_id}", dataset.to_document())
    return dataset_id


def new_job(
    store: FirestoreMetadataStore,
    uid: str,
    model: str,
    dataset_id: str,
    *,
    epochs: int = 1,
    batch_size: int = 4,
    lr_multiplier: float = 1.0,
    **options: Any,
) -> str:
    job = Job(
        id=f"ftjob-{uuid.uuid4().hex[:12]}",
        owner=uid,
        model=model,
        training_file=dataset_id,
        status=JobStatus.queued,
        hyperparameters={"n_epochs": epochs, "batch_size": batch_size, "learning_rate_multiplier": lr_multiplier},
        options=RuntuneOptions.model_validate(options),
    )
    store.set(job_path(job.id), planned(store, job).to_document())
    return job.id


def trainer_environment(store: FirestoreMetadataStore, blobs: GcsBlobStore) -> Environment:
    """What `python -m jobs.trainer` composes, with the trainer's cloud rights only (the fixtures write
    the job and its dataset with none of those limits)."""
    settings = CommonSettings()
    return Environment(
        PermittedMetadataStore(store, "trainer"),
        PermittedBlobStore(blobs, "trainer"),
        settings,
        wiring.secret_store(settings, deployable="trainer"),
    )


def planned(store: FirestoreMetadataStore, job: Job) -> Job:
    """`job` with the plan the training service stores before it launches a job (runtune/jobs/plan.py)."""
    dataset = Dataset.model_validate(store.get(f"datasets/{job.training_file}"))
    return plan.with_plan(job, plan.plan_job(job, dataset, offered=GPU_NAMES))
