"""What a fine-tuning job leaves behind, and removing it. One definition for both deletes:
`DELETE /v1/models/{id}` (the inference service, which also unloads the model from the engine; the job
stays in the history) and `DELETE /v1/fine_tuning/jobs/{id}` (the training service, which removes the
model this way and then the job itself).

The order is what makes an interrupted delete safe to repeat: the job is marked first
(`model_deleted_at`: every resolver, in every instance and evaluation execution, answers 404 for the
model and its checkpoints from then on), then the blobs go, then the documents."""

from __future__ import annotations

from runtune import owned
from runtune.blob_layout import export_archive_prefix, export_prefix, job_prefix
from runtune.owned import JobCheckpoints
from runtune.ports.blobs import BlobStore
from runtune.ports.metadata import MetadataStore, Where
from runtune.schemas.common import now_ts
from runtune.schemas.jobs import Job


def job_folder(job: Job) -> str:
    """The job's objects: the trainer's config, resume checkpoints, tensorboard, and `export/`."""
    return job_prefix(job.owner, job.id)


def mark_model_deleted(store: MetadataStore, job: Job) -> bool:
    """Mark the job's model deleted; False if it was already (the delete is being finished)."""
    if job.model_deleted_at is not None:
        return False
    owned.jobs(store).update(job.id, {"model_deleted_at": now_ts()})
    return True


def model_checkpoint_steps(store: MetadataStore, job_id: str) -> list[int]:
    """The steps of the job's model checkpoints, oldest first."""
    return [stored.checkpoint.step_number for stored in JobCheckpoints(store).list(job_id)]


def exports_of(store: MetadataStore, job: Job) -> list[str]:
    """The ids of the owner's exports made from the job's model or its checkpoints."""
    rows = store.query("exports", where=[Where("owner", "==", job.owner), Where("job_id", "==", job.id)])
    return [export_id for export_id, _ in rows]


def remove_model_files(store: MetadataStore, blobs: BlobStore, job: Job) -> None:
    """The exports made from the job (documents and archives) and the job's `export/` folder
    (adapter, merged model, checkpoints' adapters)."""
    for export_id in exports_of(store, job):
        # Adapter archives live under the export; a merged export points into the job's folder.
        blobs.delete_prefix(export_archive_prefix(job.owner, export_id))
        store.delete(f"exports/{export_id}")
    blobs.delete_prefix(export_prefix(job.owner, job.id))


def remove_model_checkpoints(store: MetadataStore, job_id: str, steps: list[int]) -> None:
    for step in steps:
        JobCheckpoints(store).delete(job_id, step)
