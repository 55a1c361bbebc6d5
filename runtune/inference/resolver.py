"""Which model a request names: a base model of the registry, or the `ft:` id of one of the caller's
own succeeded jobs whose model was not deleted (`DELETE /v1/models/{id}`). Anything else (another
user's job, a raw `gs://` or file path, an adapter outside the caller's own folder) is a 404 that
says nothing about whether it exists."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from runtune import owned, serving
from runtune.blob_layout import job_prefix
from runtune.errors import InvalidRequest, NotFound
from runtune.models import registry
from runtune.models.registry import ModelSpec
from runtune.owned import JobCheckpoints
from runtune.ports.metadata import MetadataStore
from runtune.schemas.jobs import Checkpoint, Job, JobStatus, parse_tuned_model_id


@dataclass(frozen=True)
class TunedAdapter:
    job_id: str
    prefix: str  # the adapter's folder in the bucket, under the owner's own prefix
    step: int | None = None  # a model checkpoint's adapter; None for the job's final model

    @property
    def name(self) -> str:
        """The engine's name for it (and its local folder's): the job id, or `<job>-step-N`."""
        return self.job_id if self.step is None else checkpoint_adapter_name(self.job_id, self.step)


def checkpoint_adapter_name(job_id: str, step: int) -> str:
    return f"{job_id}-step-{step}"


@dataclass(frozen=True)
class Target:
    model: str  # as the caller named it
    spec: ModelSpec  # the base model
    adapter: TunedAdapter | None = None
    job: Job | None = None

    @property
    def engine_name(self) -> str:
        """The name the engine serves it under: the base model id, or the adapter's name (the job id)."""
        return self.adapter.name if self.adapter else self.spec.id


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
        parsed = parse_tuned_model_id(model)
        if parsed is None or parsed[2] is not None:
            raise model_not_found(model, param)
        job = self._owned_job(uid, parsed[1], model, param)
        if job.status is not JobStatus.succeeded or job.fine_tuned_model != model:
            raise model_not_found(model, param)
        if job.model_deleted_at and not deleted_too:
            raise model_not_found(model, param)
        return job

    def continued_from(self, uid: str, model: str, param: str = "model") -> tuple[Job, str]:
        """The caller's own `ft:` model that a new job continues (continued fine-tuning): its job and
        its adapter folder. Unknown, another user's, or deleted: the 404 of any unknown model; a
        model checkpoint, a job that has not succeeded, or a model without an adapter (full
        fine-tuning): a 400 naming `param`."""
        parsed = parse_tuned_model_id(model)
        if parsed is None:
            raise model_not_found(model, param)
        job = self._owned_job(uid, parsed[1], model, param)
        if job.model_deleted_at or parsed[0] != job.base_model:
            raise model_not_found(model, param)
        if parsed[2] is not None:
            raise InvalidRequest(
                f"'{model}' is a model checkpoint; a job continues a run's final model ('{job.fine_tuned_model}')",
                param=param,
                code="model_not_continuable",
            )
        if job.status is not JobStatus.succeeded or job.fine_tuned_model != model:
            raise InvalidRequest(
                f"The model '{model}' is not ready: its job '{job.id}' is {job.status.value}, and a job continues "
                "only the model of a job that succeeded",
                param=param,
                code="model_not_ready",
            )
        prefix = ((job.runtune or {}).get("export") or {}).get("adapter")
        if prefix is None:
            raise InvalidRequest(
                f"The model '{model}' was fully fine-tuned and has no adapter to continue; continue a LoRA or "
                "QLoRA model",
                param=param,
                code="model_not_continuable",
            )
        return job, self._inside_job(uid, job, prefix, model, param)

    def checkpoint(self, uid: str, model: str, param: str = "model") -> tuple[Job, Checkpoint, str]:
        """The caller's model checkpoint named `model` (`ft:<base>:<job>:ckpt-step-N`): its job, the
        checkpoint and its adapter folder; else 404."""
        parsed = parse_tuned_model_id(model)
        if parsed is None or parsed[2] is None:
            raise model_not_found(model, param)
        job = self._owned_job(uid, parsed[1], model, param)
        stored = JobCheckpoints(self._store).get(job.id, parsed[2])
        if job.model_deleted_at or stored is None:
            raise model_not_found(model, param)
        if stored.checkpoint.fine_tuned_model_checkpoint != model:
            raise model_not_found(model, param)
        return job, stored.checkpoint, self._inside_job(uid, job, stored.adapter, model, param)

    def resolve(self, uid: str, model: str, param: str = "model") -> Target:
        spec = registry.lookup(model)
        if spec is not None:
            return Target(model, spec)
        parsed = parse_tuned_model_id(model)
        if parsed is not None and parsed[2] is not None:
            job, checkpoint, prefix = self.checkpoint(uid, model, param)
            adapter = TunedAdapter(job.id, prefix, checkpoint.step_number)
        else:
            job = self.tuned_job(uid, model, param)
            prefix = ((job.runtune or {}).get("export") or {}).get("adapter")
            adapter = TunedAdapter(job.id, self._inside_job(uid, job, prefix, model, param))
        # A continued model's adapter holds the whole delta from its chain's root (the trainer
        # continued its parent's adapter), so it is served on the root like any other adapter.
        base = registry.lookup(job.base_model)
        if base is None:
            raise model_not_found(model, param)
        return Target(model, base, adapter, job)

    def _owned_job(self, uid: str, job_id: str, model: str, param: str) -> Job:
        job = owned.jobs(self._store).find_owned(uid, job_id)
        if job is None:
            raise model_not_found(model, param)
        return job

    @staticmethod
    def _inside_job(uid: str, job: Job, prefix: Any, model: str, param: str) -> str:
        """An adapter path the trainer wrote, trusted only inside the owner's own job folder."""
        if not isinstance(prefix, str) or not prefix.startswith(job_prefix(uid, job.id)) or ".." in prefix:
            raise model_not_found(model, param)
        return prefix


def base_model_object(spec: ModelSpec, profile: str) -> dict[str, Any]:
    """A base model as `GET /v1/models` and `GET /v1/models/{id}` show it. `served`: the inference
    engine serves this base's adapters (runtune/serving.json); jobs on the others train for download only."""
    return {**spec.public(), "created": 0, "served": spec.id in serving.load().served(profile)}


def tuned_model_object(job: Job, checkpoint: Checkpoint | None = None) -> dict[str, Any]:
    """A fine-tuned model (or one of its job's model checkpoints) as OpenAI's Model object shows it,
    with where it came from."""
    found = {
        "id": job.fine_tuned_model,
        "object": "model",
        "created": job.finished_at or job.created_at,
        "owned_by": job.owner,
        # What it was trained from: a base model, or (continued fine-tuning) the `ft:` model it continued.
        "parent": job.model,
        "fine_tuning_job": job.id,
        # Runtune's extension: the whole chain, and its root base (what it is served on and compared with).
        "lineage": job.lineage_or_base.model_dump(),
        # Additive (OpenAI's Model has neither): what a picker shows instead of the bare id.
        "name": job.suffix,
        "training_file": job.training_file,
    }
    if checkpoint is not None:
        found |= {
            "id": checkpoint.fine_tuned_model_checkpoint,
            "created": checkpoint.created_at,
            "step_number": checkpoint.step_number,
        }
    return found
