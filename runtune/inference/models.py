"""Which model a request names: a base model of the registry, or the `ft:` id of one of the caller's
own succeeded jobs whose model was not deleted (`DELETE /v1/models/{id}`). Anything else (another
user's job, a raw `gs://` or file path, an adapter outside the caller's own folder) is a 404 that
says nothing about whether it exists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtune import serving
from runtune.errors import NotFound
from runtune.models import registry
from runtune.models.registry import ModelSpec
from runtune.ports.metadata import MetadataStore
from runtune.schemas.common import is_resource_id
from runtune.schemas.jobs import Job, JobStatus, job_path


@dataclass(frozen=True)
class TunedAdapter:
    job_id: str
    prefix: str  # the adapter's folder in the bucket, under the owner's own prefix


@dataclass(frozen=True)
class Target:
    model: str  # as the caller named it
    spec: ModelSpec  # the base model
    adapter: TunedAdapter | None = None
    job: Job | None = None

    @property
    def engine_name(self) -> str:
        """The name the engine serves it under: the base model id, or the adapter's name (the job id)."""
        return self.adapter.job_id if self.adapter else self.spec.id


def model_not_found(model: str, param: str = "model") -> NotFound:
    return NotFound(
        f"The model '{model}' does not exist or you do not have access to it.", param=param, code="model_not_found"
    )


class ModelResolver:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    def tuned_job(self, uid: str, model: str, param: str = "model", *, deleted_too: bool = False) -> Job:
        """The caller's own succeeded job whose `fine_tuned_model` is `model`, else 404; one whose
        model was deleted only with `deleted_too` (a repeated delete finishes an interrupted cleanup)."""
        parts = model.split(":")
        if len(parts) != 3 or parts[0] != "ft" or not is_resource_id(parts[2]):
            raise model_not_found(model, param)
        document = self._store.get(job_path(parts[2]))
        if document is None or document.get("owner") != uid:
            raise model_not_found(model, param)
        job = Job.model_validate(document)
        if job.status is not JobStatus.succeeded or job.fine_tuned_model != model:
            raise model_not_found(model, param)
        if job.model_deleted_at and not deleted_too:
            raise model_not_found(model, param)
        return job

    def resolve(self, uid: str, model: str, param: str = "model") -> Target:
        spec = registry.lookup(model)
        if spec is not None:
            return Target(model, spec)
        job = self.tuned_job(uid, model, param)
        base = registry.lookup(job.model)
        prefix = ((job.runtune or {}).get("export") or {}).get("adapter")
        if base is None or not prefix:
            raise model_not_found(model, param)
        # The job document is written by the trainer; trust its adapter path only inside the owner's
        # own job folder.
        if not isinstance(prefix, str) or not prefix.startswith(f"users/{uid}/jobs/{job.id}/") or ".." in prefix:
            raise model_not_found(model, param)
        return Target(model, base, TunedAdapter(job.id, prefix), job)


def base_model_object(spec: ModelSpec, profile: str) -> dict[str, Any]:
    """A base model as `GET /v1/models` and `GET /v1/models/{id}` show it. `served`: the inference
    engine serves this base's adapters (runtune/serving.json); jobs on the others train for download only."""
    return {**spec.public(), "created": 0, "served": spec.id in serving.load().served(profile)}


def tuned_model_object(job: Job) -> dict[str, Any]:
    """A fine-tuned model as OpenAI's Model object shows it, with where it came from."""
    return {
        "id": job.fine_tuned_model,
        "object": "model",
        "created": job.finished_at or job.created_at,
        "owned_by": job.owner,
        "parent": job.model,
        "fine_tuning_job": job.id,
    }
