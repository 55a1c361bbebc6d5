"""Evaluations and exports of fine-tuned models."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field

from runtune.schemas.common import ApiError, OwnedResource


class EvaluationStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class Evaluation(OwnedResource):
    object: Literal["evaluation"] = "evaluation"
    status: EvaluationStatus = EvaluationStatus.queued
    dataset_id: str
    split: str = "test"
    models: list[str]
    method: Literal["label_scoring", "generation"] = "label_scoring"
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)
    samples_done: int = 0
    samples_total: int | None = None
    error: ApiError | None = None
    finished_at: int | None = None


class ExportFormat(StrEnum):
    adapter = "adapter"
    merged = "merged"
    gguf = "gguf"


class ExportStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class ExportFile(BaseModel):
    path: str
    bytes: int


class Export(OwnedResource):
    object: Literal["export"] = "export"
    job_id: str
    format: ExportFormat
    status: ExportStatus = ExportStatus.queued
    files: list[ExportFile] = Field(default_factory=list)
    error: ApiError | None = None
    finished_at: int | None = None
