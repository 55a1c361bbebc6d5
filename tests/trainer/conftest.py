"""Fixtures of the trainer tests: the tiny models (built once per session, into the folder the
registry resolves `tiny-*` ids to) and helpers that write a job and its dataset to the emulators."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from jobs.trainer.recipe import Environment
from runtune import wiring
from runtune.adapters.firestore import FirestoreMetadataStore
from runtune.adapters.gcs import GcsBlobStore
from runtune.adapters.permitted import PermittedBlobStore, PermittedMetadataStore
from runtune.datasets.limits import DatasetLimits
from runtune.datasets.pipeline import IngestOptions, Ingestor
from runtune.demo.shapes import CLASSES, write_demo_dataset
from runtune.estimate import GPU_NAMES
from runtune.jobs import plan
from runtune.models.tiny import TINY_IDS, ensure_tiny_model, tiny_dir
from runtune.schemas import Dataset, DatasetStatus, Job, JobStatus, TaskKind
from runtune.schemas.jobs import RuntuneOptions, job_path
from runtune.settings import CommonSettings
from runtune.training import checkpoints


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


def demo_dataset(
    store: FirestoreMetadataStore, blobs: GcsBlobStore, uid: str, modality: str, counts: dict[str, int]
) -> str:
    """The generated demo classification set (runtune/demo/shapes.py), `counts` examples per split."""
    dataset_id = new_dataset(store, uid, modality=modality, task=TaskKind.classification, labels=list(CLASSES))
    write_demo_dataset(blobs, uid, dataset_id, counts=counts)
    return dataset_id


def ingested(
    store: FirestoreMetadataStore,
    blobs: GcsBlobStore,
    uid: str,
    source: Path,
    *,
    name: str,
    options: IngestOptions | None = None,
) -> Dataset:
    """The file `source` through the real ingestion (its work folder beside it), its dataset `name`
    stored ready with what the ingestion found, as the preprocessing service leaves it."""
    dataset_id = f"file-{uuid.uuid4().hex[:12]}"
    ingestor = Ingestor(blobs, uid, dataset_id, limits=DatasetLimits(), workdir=source.with_name(f"work-{source.name}"))
    result = ingestor.ingest_file(source, source.name, options or IngestOptions())
    found = {
        key: getattr(result, key) for key in ("task_kind", "modality", "splits", "labels", "label_counts", "stats")
    }
    dataset = Dataset(id=dataset_id, owner=uid, name=name, status=DatasetStatus.ready, **found)
    store.set(f"datasets/{dataset_id}", dataset.to_document())
    return dataset


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


def save_checkpoint(
    store: FirestoreMetadataStore,
    blobs: GcsBlobStore,
    uid: str,
    job_id: str,
    step: int,
    trained: tuple[torch.nn.Module, Any, Any],
    history: list[dict[str, Any]] | None = None,
) -> None:
    """A resume state of `trained` (a module, its optimizer and scheduler) after `step` steps of epoch
    0, as the trainer saves one."""
    module, optimizer, scheduler = trained
    checkpoints.save(
        blobs,
        store,
        uid=uid,
        job_id=job_id,
        model_id="tiny-gemma-3-text",
        position=checkpoints.Position(step, 0, step),
        weights={name: p.detach().clone() for name, p in module.named_parameters()},
        optimizer=optimizer,
        scheduler=scheduler,
        history=history or [],
        metrics={"step": float(step)},
    )
