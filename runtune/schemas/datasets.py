"""Datasets (and their OpenAI `file` view: a file uploaded through /v1/files is a dataset)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runtune.schemas.common import ApiError, OwnedResource

# Gemma 3's SigLIP encoder sees 896x896 (pan-and-scan crops are 896 too): more pixels only cost
# storage and decode time in the trainer, so images are scaled down to this longest side.
DEFAULT_IMAGE_SIDE = 896


class DatasetStatus(StrEnum):
    uploading = "uploading"
    processing = "processing"
    ready = "ready"
    failed = "failed"


class TaskKind(StrEnum):
    classification = "classification"
    generation = "generation"
    # Pairs of answers to one prompt, the preferred one first: what a `dpo` job trains on.
    preference = "preference"


class Progress(BaseModel):
    phase: str
    done: int = 0
    total: int | None = None
    # When the worker last reported: a `processing` dataset whose worker went quiet was interrupted.
    updated_at: int | None = None


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
    # What the dataset keeps in storage once ready (its source copy, shards and previews): counted
    # against its owner's storage quota (runtune/quotas.py); `bytes` stands in until then.
    stored_bytes: int | None = None
    # Everything `GET /v1/datasets/{id}/stats` answers (rows, lengths, image sizes, duplicates...).
    stats: dict[str, Any] | None = None
    # Internal: what the ingestion reads, and the execution running it (the launcher's name).
    ingest: IngestSpec | None = Field(default=None, exclude=True)
    execution_name: str | None = Field(default=None, exclude=True)
    # When it began waiting for an ingestion slot (fractional seconds: one user's datasets made within
    # a second start in the order they were made).
    queued_at: float | None = Field(default=None, exclude=True)

    def to_document(self) -> dict[str, Any]:
        document = super().to_document()
        # Internal fields are excluded from the API but must be stored.
        document["ingest"] = self.ingest.model_dump(mode="json") if self.ingest else None
        document["execution_name"] = self.execution_name
        document["queued_at"] = self.queued_at
        return document

    @field_validator("label_counts")
    @classmethod
    def _labels_in_order(cls, counts: dict[str, int]) -> dict[str, int]:
        # Firestore keeps no key order in maps: sorted here, every reader shows the labels alike.
        return dict(sorted(counts.items()))

    @field_validator("splits")
    @classmethod
    def _splits_in_order(cls, counts: dict[str, int]) -> dict[str, int]:
        order = {"train": 0, "validation": 1, "test": 2}
        return dict(sorted(counts.items(), key=lambda item: (order.get(item[0], 3), item[0])))

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


# -- Requests and options of the datasets API (read by `runtune.datasets` when it ingests) ------


class ColumnMapping(BaseModel):
    """How a table's columns become a chat: a system prompt, the user turn, and the answer."""

    model_config = ConfigDict(extra="forbid")

    system: str | None = Field(default=None, max_length=8192, description="A system prompt (literal text)")
    user: str | None = Field(
        default=None,
        max_length=8192,
        description="The user turn; `{column}` is replaced by that column's value, `{labels}` by the label set",
    )
    image: str | None = Field(
        default=None,
        description="Column holding the image (bytes, {bytes, path}, a path "
        "inside the uploaded archive, or a data URL)",
    )
    answer: str | None = Field(default=None, description="Column holding the assistant's answer (generation)")
    chosen: str | None = Field(default=None, description="Column holding the preferred answer (preference)")
    rejected: str | None = Field(default=None, description="Column holding the non-preferred answer (preference)")
    label: str | None = Field(default=None, description="Column holding the class (classification)")
    split: str | None = Field(default=None, description="Column naming each row's split (train/validation/test)")


class SplitOptions(BaseModel):
    """A seeded stratified split, used when the data names no splits itself."""

    model_config = ConfigDict(extra="forbid")

    validation: float = Field(default=0.1, ge=0.0, le=0.5)
    test: float = Field(default=0.1, ge=0.0, le=0.5)
    seed: int = Field(default=42, ge=0, le=2**31 - 1)


class HubSource(BaseModel):
    """A dataset on the Hugging Face Hub; the token comes from the caller's stored secrets."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")
    config: str | None = Field(default=None, max_length=200)
    split: str | None = Field(default=None, max_length=200, description="Hub split to import (default: all)")
    revision: str | None = Field(default=None, max_length=200)
    token_secret: str | None = Field(
        default="hf_token", description="Name of the caller's secret (PUT /v1/secrets/{name}) with a Hub token"
    )
    max_rows: int | None = Field(default=None, ge=1)


class IngestSpec(BaseModel):
    """What one ingestion reads, stored on its dataset so the execution needs only the dataset's id:
    the options of the create call and exactly one input (an object in the bucket, or a Hub dataset)."""

    model_config = ConfigDict(extra="ignore")

    mapping: ColumnMapping | None = None
    task_kind: TaskKind | None = None
    split: SplitOptions = Field(default_factory=SplitOptions)
    max_image_side: int | None = DEFAULT_IMAGE_SIDE
    skip_bad_rows: bool = False
    # The bucket object (an upload's, or the kept body of a /v1/files call), derived by the service.
    object_path: str | None = None
    filename: str | None = None
    hub: HubSource | None = None

    @model_validator(mode="after")
    def _one_input(self) -> IngestSpec:
        if (self.object_path is None) == (self.hub is None) or (self.object_path is not None and not self.filename):
            raise ValueError("an ingestion reads exactly one input: object_path with filename, or hub")
        return self


class CreateDatasetRequest(BaseModel):
    """`POST /v1/datasets`: from a completed upload or from the Hub (exactly one)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200)
    upload_id: str | None = Field(default=None, max_length=128)
    hub: HubSource | None = None
    mapping: ColumnMapping | None = None
    task_kind: TaskKind | None = Field(
        default=None,
        description="classification, generation, preference, or auto/null: detected (a label column, an image "
        "folder, or a chat JSONL whose final answers are a small closed set mean classification; a preference "
        "JSONL or chosen/rejected columns mean preference)",
    )
    split: SplitOptions = Field(default_factory=SplitOptions)
    max_image_side: int | None = Field(
        default=DEFAULT_IMAGE_SIDE, ge=64, le=8192, description="Longest image side after resizing; null keeps the size"
    )
    skip_bad_rows: bool = Field(default=False, description="Skip (and count) bad rows instead of failing")

    @field_validator("task_kind", mode="before")
    @classmethod
    def _auto_is_detected(cls, value: Any) -> Any:
        return None if value == "auto" else value

    @model_validator(mode="after")
    def _one_source(self) -> CreateDatasetRequest:
        if (self.upload_id is None) == (self.hub is None):
            raise ValueError("give exactly one of 'upload_id' or 'hub'")
        return self


class UploadStatus(StrEnum):
    pending = "pending"
    completed = "completed"


class Upload(OwnedResource):
    """An upload session: the file goes straight to the bucket (resumable) or through the service."""

    object: Literal["upload"] = "upload"
    filename: str
    bytes: int
    mime_type: str
    purpose: str = "fine-tune"
    status: UploadStatus = UploadStatus.pending
    expires_at: int
    # Where the object lives; server-side only, so nobody can point an upload at another's objects.
    object_path: str = Field(exclude=True)
    # Only in the answer to the create call: the session URL is the credential for the upload.
    upload_url: str | None = None

    def to_document(self) -> dict[str, Any]:
        document = super().to_document()
        document["object_path"] = self.object_path
        document.pop("upload_url", None)
        # A Timestamp twin of `expires_at`: Firestore's TTL policy (runtune/indexes.py TTL_POLICIES)
        # deletes the document after it; TTL ignores integers.
        document["delete_after"] = datetime.fromtimestamp(self.expires_at, UTC)
        return document


class CreateUploadRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=255)
    bytes: int = Field(ge=0)
    mime_type: str = Field(default="application/octet-stream", max_length=200)
    purpose: str = Field(default="fine-tune", max_length=64)
