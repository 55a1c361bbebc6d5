"""`DELETE /v1/fine_tuning/jobs/{id}` (Runtune's own; OpenAI's API has none): an ended job out of the
platform with everything it produced: its model and model checkpoints, the exports made from them,
its objects (resume checkpoints, config, export folder) and its documents (events, checkpoints).

The model part is `runtune.jobs.removal`, shared with `DELETE /v1/models/{id}`. That route (the
inference service's) also unloads the model from the engine; this one cannot reach the engine, so
an adapter still loaded there stays in its slot until the engine's least-recently-used eviction
takes it. Nothing can use it meanwhile: the job is marked first, and every resolver answers 404
for its models from then on. The web UI deletes the model through `/v1/models` first for that reason."""

from __future__ import annotations

from runtune import owned
from runtune.errors import Conflict
from runtune.jobs import removal
from runtune.ports.blobs import BlobStore
from runtune.ports.metadata import MetadataStore
from runtune.schemas.jobs import JobDeleted, job_path


class JobDeletion:
    def __init__(self, store: MetadataStore, blobs: BlobStore) -> None:
        self._store = store
        self._blobs = blobs
        self._jobs = owned.jobs(store)

    def delete(self, uid: str, job_id: str) -> JobDeleted:
        """In an order that a repeat finishes after any interruption: the model marked deleted, its
        files and exports, the job's other objects, its model checkpoints' documents, then the job's
        document tree last (until then the job is listed, and deleting it again resumes here)."""
        job = self._jobs.get_owned(uid, job_id)
        if not job.status.is_terminal:
            raise Conflict(
                f"Job '{job.id}' is {job.status.value}; cancel it and delete it once it has ended",
                param="id",
                code="job_not_finished",
            )
        if job.fine_tuned_model:
            removal.mark_model_deleted(self._store, job)
        exports = removal.exports_of(self._store, job)
        checkpoints = removal.model_checkpoint_steps(self._store, job.id)
        removal.remove_model_files(self._store, self._blobs, job)
        self._blobs.delete_prefix(removal.job_folder(job))
        removal.remove_model_checkpoints(self._store, job.id, checkpoints)
        self._store.delete_tree(job_path(job.id))
        return JobDeleted(
            id=job.id,
            fine_tuned_model=job.fine_tuned_model if job.model_deleted_at is None else None,
            checkpoints=len(checkpoints),
            exports=exports,
        )
