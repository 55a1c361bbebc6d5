"""Datasets (and their OpenAI `file` view: a file uploaded through /v1/files is a dataset)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from runtune.schemas.common import ApiError, ApiModel, OwnedResource

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


class Progress(ApiModel):
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


class FileObject(ApiModel):
    """The OpenAI `file` object."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["uploaded", "processed", "error"]
    status_details: str | None = None


class DatasetShard(ApiModel):
    """One Parquet shard of a ready dataset (`GET /v1/datasets/{id}/download`), with a signed URL."""

    object: Literal["dataset.shard"] = "dataset.shard"
    split: str
    # The shard's file name under the dataset's folder (`train-00000.parquet`).
    name: str
    bytes: int
    url: str


class Distribution(ApiModel):
    """A value's spread over a dataset (`runtune.datasets.stats.Reservoir.summary`). The values are
    counts and pixels, so `int | float`: an int stays an int in the JSON (a bare `float` writes 3.0)."""

    count: int
    min: int | float
    p10: int | float
    p50: int | float
    p90: int | float
    max: int | float
    mean: int | float


class DatasetStats(BaseModel):
    """`GET /v1/datasets/{id}/stats`: the dataset's counts, then what its ingestion measured (its
    `stats`, which win where both name a key). The measured part is as the ingestion that made the
    dataset wrote it: a key it lacks stays out of the answer (`response_model_exclude_unset`), and
    keys newer than these pass through (`extra="allow"`); so no `ApiModel`, every default optional."""

    model_config = ConfigDict(extra="allow")

    object: Literal["dataset.stats"] = "dataset.stats"
    id: str
    task_kind: TaskKind | None
    modality: Literal["text", "vision"] | None
    splits: dict[str, int]
    labels: list[str]
    # Flat ({label: n}) without measured stats, per split ({split: {label: n}}) with them.
    label_counts: dict[str, dict[str, int]] | dict[str, int]
    warnings: list[str]
    rows: int | None = None
    task_kind_reason: str | None = None
    prompt_chars: Distribution | None = None
    answer_chars: Distribution | None = None
    answer_words: Distribution | None = None
    example_chars: Distribution | None = None
    image_width: Distribution | None = None
    image_height: Distribution | None = None
    max_images_per_example: int | None = None
    images: int | None = None
    images_resized: int | None = None
    duplicates_removed: int | None = None
    near_empty_rows: int | None = None
    skipped_rows: int | None = None
    # The first problems of the skipped rows, in words.
    skipped_examples: list[str] | None = None
    ignored_files: int | None = None
    # A preference set's pairs: the answers' lengths, and the share whose preferred answer is longer.
    pairs: int | None = None
    chosen_chars: Distribution | None = None
    rejected_chars: Distribution | None = None
    chosen_longer_share: float | None = None


class TextPart(ApiModel):
    type: Literal["text"] = "text"
    text: str | None


class ImagePart(ApiModel):
    type: Literal["image"] = "image"
    # Which of the sample's `images` stands here.
    image_index: int


class SampleMessage(ApiModel):
    role: str
    content: list[Annotated[TextPart | ImagePart, Field(discriminator="type")]]


class SampleImage(ApiModel):
    width: int
    height: int
    path: str | None
    # A small JPEG as a data URL.
    thumbnail: str


class Sample(ApiModel):
    """One example as `GET /v1/datasets/{id}/samples` shows it (`runtune.datasets.previews.preview_row`)."""

    object: Literal["dataset.sample"] = "dataset.sample"
    id: str
    split: str
    index: int
    messages: list[SampleMessage]
    label: str | None
    # A preference pair's non-preferred answer (the preferred one ends `messages`); null otherwise.
    rejected: list[SampleMessage] | None = None
    images: list[SampleImage]


# -- Requests and options of the datasets API (read by `runtune.datasets` when it ingests) ------


class ColumnMapping(ApiModel):
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


class SplitOptions(ApiModel):
    """A seeded stratified split, used when the data names no splits itself."""

    model_config = ConfigDict(extra="forbid")

    validation: float = Field(default=0.1, ge=0.0, le=0.5)
    test: float = Field(default=0.1, ge=0.0, le=0.5)
    seed: int = Field(default=42, ge=0, le=2**31 - 1)


class HubSource(ApiModel):
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


class IngestSpec(ApiModel):
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


class CreateDatasetRequest(ApiModel):
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


class CreateUploadRequest(ApiModel):
    model_config = ConfigDict(extra="forbid")

    filename: str = Field(min_length=1, max_length=255)
    bytes: int = Field(ge=0)
    mime_type: str = Field(default="application/octet-stream", max_length=200)
    purpose: str = Field(default="fine-tune", max_length=64)


# `Dataset.ingest` names a class defined below it: complete the model at import, so that its schema
# (and the OpenAPI document generated from it) is the same before and after its first use.
Dataset.model_rebuild()
