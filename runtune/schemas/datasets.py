"""Datasets (and their OpenAI `file` view: a file uploaded through /v1/files is a dataset)."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field

from runtune.schemas.common import ApiError, OwnedResource


class DatasetStatus(StrEnum):
    uploading = "uploading"
    processing = "processing"
    ready = "ready"
    failed = "failed"


class TaskKind(StrEnum):
    classification = "classification"
    generation = "generation"


class Progress(BaseModel):
    phase: str
    done: int = 0
    total: int | None = None


class Dataset(OwnedResource):
    object: Literal["dataset"] = "dataset"
    name: str
    status: DatasetStatus = DatasetStatus.uploading
    filename: str | None = None
    bytes: int = 0
    source: dict[str, str] = Field(default_factory=dict)
    task_kind: TaskKind | None = None
    modality: Literal["text", "vision"] | None = None
    splits: dict[str, int] = Field(default_factory=dict)
    labels: list[str] = Field(default_factory=list)
    label_counts: dict[str, int] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    progress: Progress | None = None
    error: ApiError | None = None
    purpose: str = "fine-tune"

    def as_file(self) -> FileObject:
        status = {"ready": "processed", "failed": "error"}.get(self.status.value, "uploaded")
        return FileObject(
            id=self.id,
            bytes=self.bytes,
            created_at=self.created_at,
            filename=self.filename or self.name,
            purpose=self.purpose,
            status=status,
            status_details=self.error.message if self.error else None,
        )


class FileObject(BaseModel):
    """The OpenAI `file` object."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"]
    status_details: str | None = None
