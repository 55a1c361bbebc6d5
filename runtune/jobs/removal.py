"""What a fine-tuning job leaves behind, and removing it. One definition for both deletes:
`DELETE /v1/models/{id}` (the inference service, which also unloads the model from the engine; the job
stays in the history) and `DELETE /v1/fine_tuning/jobs/{id}` (the training service, which removes the
model this way and then the job itself).

The order is what makes an interrupted delete safe to repeat: the job is marked first
(`model_deleted_at`: every resolver, in every instance and evaluation execution, answers 404 for the
model and its checkpoints from then on), then the blobs go, then the documents."""

from __future__ import annotations

from runtune.ports.blobs import BlobStore
from runtune.ports.metadata import MetadataStore, Where
from runtune.schemas.common import now_ts
from runtune.schemas.jobs import Job, job_path


def job_folder(job: Job) -> str:
    """The job's objects: the trainer's config, resume checkpoints, tensorboard, and `export/`."""
    return f"users/{job.owner}/jobs/{job.id}/"


def mark_model_deleted(store: MetadataStore, job: Job) -> bool:
    """Mark the job's model deleted; False if it was already (the delete is being finished)."""
    if job.model_deleted_at is not None:
        return False
    store.update(job_path(job.id), {"model_deleted_at": now_ts()})
    return True


def model_checkpoint_steps(store: MetadataStore, job_id: str) -> dict[str, int]:
    """The job's model checkpoints: document id -> step."""
    rows = store.query(f"{job_path(job_id)}/model_checkpoints")
    return {checkpoint_id: int(document["step_number"]) for checkpoint_id, document in rows}


def exports_of(store: MetadataStore, job: Job) -> list[str]:
    """The ids of the owner's exports made from the job's model or its checkpoints."""
    rows = store.query("exports", where=[Where("owner", "==", job.owner), Where("job_id", "==", job.id)])
    return [export_id for export_id, _ in rows]


def remove_model_files(store: MetadataStore, blobs: BlobStore, job: Job) -> None:
    """The exports made from the job (documents and archives) and the job's `export/` folder
    (adapter, merged model, checkpoints' adapters)."""
    for export_id in exports_of(store, job):
        # Adapter archives live under the export; a merged export points into the job's folder.
        blobs.delete_prefix(f"users/{job.owner}/exports/{export_id}/")
        store.delete(f"exports/{export_id}")
    blobs.delete_prefix(f"{job_folder(job)}export/")


def remove_model_checkpoints(store: MetadataStore, job_id: str, checkpoint_ids: list[str]) -> None:
    for checkpoint_id in checkpoint_ids:
        store.delete(f"{job_path(job_id)}/model_checkpoints/{checkpoint_id}")
