"""Evaluations and exports of fine-tuned models."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import ConfigDict, Field

from runtune.schemas.common import ApiError, ApiModel, OwnedResource
from runtune.schemas.reports import ModelReport


class WorkStatus(StrEnum):
    """An evaluation's or an export's status: queued until its execution starts, over once it
    succeeded or failed."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


# The names each resource's code reads them by.
EvaluationStatus = ExportStatus = WorkStatus


class ExecutedResource(OwnedResource):
    """A resource that an execution of its own works on (an evaluation, an export): over once it
    succeeded or failed, with the launcher's name of that execution stored but never shown."""

    execution_name: str | None = Field(default=None, exclude=True)
    if TYPE_CHECKING:
        # Each subclass declares it, as the API shows it among its own fields.
        status: WorkStatus

    @property
    def is_finished(self) -> bool:
        return self.status in (WorkStatus.succeeded, WorkStatus.failed)

    def to_document(self) -> dict[str, Any]:
        document = super().to_document()
        document["execution_name"] = self.execution_name
        return document


class Evaluation(ExecutedResource):
    object: Literal["evaluation"] = "evaluation"
    status: EvaluationStatus = EvaluationStatus.queued
    dataset_id: str
    split: str = "test"
    models: list[str]
    method: Literal["label_scoring", "generation"] = "label_scoring"
    # Each model's report, by the model's id.
    metrics: dict[str, ModelReport] = Field(default_factory=dict)
    samples_done: int = 0
    samples_total: int | None = None
    max_samples: int | None = None
    labels: list[str] = Field(default_factory=list)
    # Label scoring: how the engine was asked (`batched`, `per_label` or `prefix_search`, all exact),
    # the fastest on the run's first samples.
    scoring_method: str | None = None
    error: ApiError | None = None
    finished_at: int | None = None
    # The evaluation's execution (`jobs/evaluate`) beats this while it works; the inference service
    # checks the execution of one whose beat is overdue, and fails it if the execution ended.
    heartbeat_at: int | None = None


class Prediction(ApiModel):
    """One example of an evaluation (`GET /v1/evaluations/{id}/predictions`): the expected answer and
    each model's, by the model's id (null: a label scoring answer that named no label)."""

    index: int
    expected: str
    predictions: dict[str, str | None]


class ExportFormat(StrEnum):
    adapter = "adapter"
    merged = "merged"
    # Made from `merged` by a conversion execution (jobs/convert, runtune.gguf_export).
    gguf = "gguf"
    ollama = "ollama"

    @property
    def is_converted(self) -> bool:
        return self in (ExportFormat.gguf, ExportFormat.ollama)


class Quantization(StrEnum):
    """GGUF weight types: 16-bit, 8-bit, and llama.cpp's usual 4-bit mix (Ollama's default)."""

    f16 = "f16"
    q8_0 = "q8_0"
    q4_k_m = "q4_k_m"


class ExportFile(ApiModel):
    path: str
    bytes: int


class ExportLink(ApiModel):
    """A file of an export as the API shows it: a download URL that stops working at `expires_at`."""

    name: str
    bytes: int
    url: str
    expires_at: int


class Export(ExecutedResource):
    object: Literal["export"] = "export"
    job_id: str
    format: ExportFormat
    status: ExportStatus = ExportStatus.queued
    model: str | None = None
    files: list[ExportFile] = Field(default_factory=list, exclude=True)
    # Filled on every read: fresh signed URLs, never stored.
    links: list[ExportLink] = Field(default_factory=list)
    error: ApiError | None = None
    finished_at: int | None = None
    # GGUF and Ollama exports: the weight type, and what the conversion is doing (`converting`,
    # `quantizing`, `uploading`) while it runs.
    quantization: Quantization | None = None
    phase: str | None = None
    heartbeat_at: int | None = None

    def to_document(self) -> dict[str, Any]:
        document = super().to_document()
        document["files"] = [file.model_dump() for file in self.files]
        document["links"] = []
        return document


class CreateEvaluationRequest(ApiModel):
    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(min_length=1, max_length=128)
    split: str = Field(default="test", pattern=r"^(train|validation|test)$")
    # One model, or two to compare (a base model and a tuned one, typically).
    models: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(min_length=1, max_length=2)
    method: Literal["label_scoring", "generation"] = "label_scoring"
    max_samples: int | None = Field(default=None, ge=1, le=100_000)


class CreateExportRequest(ApiModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=300, description="The `ft:` id of one of your succeeded jobs")
    format: ExportFormat = ExportFormat.adapter
    quantization: Quantization | None = Field(
        default=None, description="GGUF and Ollama exports only: f16, q8_0 or q4_k_m (the default)"
    )


MAX_VIBE_IMAGE_CHARS = 14_000_000  # a data URL of about 10 MB of image


class VibePrompt(ApiModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str = Field(min_length=1, max_length=8_000)
    image: str | None = Field(
        default=None, max_length=MAX_VIBE_IMAGE_CHARS, description="A base64 data URL (data:image/...;base64,...)"
    )


class CreateVibeCheckRequest(ApiModel):
    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=300, description="The tuned model (an `ft:` id)")
    base_model: str | None = Field(default=None, max_length=300, description="Default: the tuned model's base")
    prompts: list[VibePrompt] = Field(min_length=1, max_length=20)
    max_tokens: int = Field(default=128, ge=1, le=2048)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    # As chat completions take it (`services/inference/chat_api.py`); unset: the engine's default (1).
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)


class VibeAnswer(ApiModel):
    prompt: str
    image: bool = False
    # The prompt's image: stored in the bucket (`image_path`, never inline in the document); the API
    # shows it as a signed download URL made on each read, valid for a while (`image_url_expires_at`).
    image_url: str | None = None
    image_url_expires_at: int | None = None
    image_path: str | None = Field(default=None, exclude=True)
    base: str
    tuned: str


class VibeCheck(OwnedResource):
    object: Literal["vibe_check"] = "vibe_check"
    model: str
    base_model: str
    results: list[VibeAnswer]

    def to_document(self) -> dict[str, Any]:
        document = super().to_document()
        document["results"] = [
            {
                **answer.model_dump(mode="json"),
                "image_url": None,
                "image_url_expires_at": None,
                "image_path": answer.image_path,
            }
            for answer in self.results
        ]
        return document
