"""Fine-tuning jobs, their events and checkpoints (OpenAI `fine_tuning.job*` shapes)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from runtune.schemas.common import ApiError, OwnedResource


class JobStatus(StrEnum):
    validating_files = "validating_files"
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class JobPhase(StrEnum):
    launching = "launching"
    loading_model = "loading_model"
    preparing_data = "preparing_data"
    training = "training"
    evaluating = "evaluating"
    exporting = "exporting"
    done = "done"


class Hyperparameters(BaseModel):
    n_epochs: int | Literal["auto"] = "auto"
    batch_size: int | Literal["auto"] = "auto"
    learning_rate_multiplier: float | Literal["auto"] = "auto"


class Job(OwnedResource):
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    model: str
    status: JobStatus = JobStatus.validating_files
    training_file: str
    validation_file: str | None = None
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    method: dict[str, Any] = Field(default_factory=dict)
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    estimated_finish: int | None = None
    organization_id: str = "org-runtune"
    result_files: list[str] = Field(default_factory=list)
    trained_tokens: int | None = None
    seed: int = 42
    suffix: str | None = None
    metadata: dict[str, str] | None = None
    integrations: list[dict[str, Any]] = Field(default_factory=list)
    error: ApiError | None = None
    # Runtune's extra fields: the finer phase, progress, and where the trainer runs.
    phase: JobPhase | None = None
    steps_completed: int = 0
    total_steps: int | None = None
    seconds_remaining: int | None = None
    execution_name: str | None = Field(default=None, exclude=True)
    heartbeat_at: float | None = Field(default=None, exclude=True)
    cancel_requested: bool = Field(default=False, exclude=True)
    runtune: dict[str, Any] = Field(default_factory=dict)

    def to_document(self) -> dict[str, Any]:
        document = super().to_document()
        # Internal fields are excluded from the API but must be stored.
        document.update(
            execution_name=self.execution_name,
            heartbeat_at=self.heartbeat_at,
            cancel_requested=self.cancel_requested,
        )
        return document


class JobEvent(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"] = "info"
    message: str
    type: Literal["message", "metrics"] = "message"
    data: dict[str, Any] | None = None
    seq: int = Field(exclude=True, default=0)


class Checkpoint(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    step_number: int
    metrics: dict[str, float] = Field(default_factory=dict)
