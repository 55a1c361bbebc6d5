"""The training config: typed, resolved from the job, the dataset and the registry, and validated
all at once before any model loads (every problem reported together), then saved next to the
checkpoints so a run can be read back exactly as it was trained."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from runtune.models.registry import ModelSpec, get, lookup
from runtune.schemas import Dataset, Job, TaskKind

BASE_LEARNING_RATE = {"qlora": 2e-4, "lora": 2e-4, "full": 2e-5}
DEFAULT_EPOCHS = 3
DEFAULT_BATCH_SIZE = 4


class ConfigError(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


class TrainConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str
    owner: str
    model: str
    dataset_id: str
    validation_dataset_id: str | None = None
    task_kind: TaskKind = TaskKind.generation
    labels: list[str] = Field(default_factory=list)
    method: Literal["qlora", "lora", "full"] = "qlora"
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: Literal["all-linear"] | list[str] = "all-linear"
    lora_vision_tower: bool = False
    max_length: int = 1024
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    gradient_accumulation_steps: int = 1
    learning_rate: float = 2e-4
    lr_scheduler: Literal["cosine", "linear"] = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = True
    pad_to_multiple_of: int = 8
    checkpoint_every_steps: int = 50
    checkpoint_every_minutes: float = 10.0
    eval_baseline: bool = False
    eval_method: Literal["label_scoring", "generation", "both"] = "label_scoring"
    eval_split: Literal["validation", "test"] = "test"
    eval_max_samples: int | None = None
    export_merged: bool = True
    push_to_hub: str | None = None
    seed: int = 42

    @property
    def spec(self) -> ModelSpec:
        return get(self.model)


def resolve(job: Job, dataset: Dataset) -> TrainConfig:
    """The config a job asks for, or a `ConfigError` naming every problem at once."""
    options = job.options
    hp = job.hyperparameters
    method = options.method
    multiplier = 1.0 if hp.learning_rate_multiplier == "auto" else float(hp.learning_rate_multiplier)
    scale = spec.learning_rate_scale if (spec := lookup(job.model)) else 1.0
    config = TrainConfig(
        job_id=job.id,
        owner=job.owner,
        model=job.model,
        dataset_id=job.training_file,
        validation_dataset_id=job.validation_file,
        task_kind=dataset.task_kind or TaskKind.generation,
        labels=list(dataset.labels),
        method=method,
        lora_rank=options.lora.rank,
        lora_alpha=options.lora.alpha,
        lora_dropout=options.lora.dropout,
        lora_target_modules=options.lora.target_modules,
        lora_vision_tower=options.lora.vision_tower,
        max_length=options.max_length,
        epochs=DEFAULT_EPOCHS if hp.n_epochs == "auto" else hp.n_epochs,
        batch_size=DEFAULT_BATCH_SIZE if hp.batch_size == "auto" else hp.batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps or 1,
        learning_rate=BASE_LEARNING_RATE[method] * scale * multiplier,
        lr_scheduler=options.lr_scheduler,
        warmup_ratio=options.warmup_ratio,
        gradient_checkpointing=options.gradient_checkpointing,
        checkpoint_every_steps=options.checkpoint_every_steps,
        checkpoint_every_minutes=options.checkpoint_every_minutes,
        eval_baseline=options.evaluation.baseline,
        eval_method=options.evaluation.method,
        eval_split=options.evaluation.split,
        eval_max_samples=options.evaluation.max_samples,
        export_merged=options.export.merged,
        push_to_hub=options.export.push_to_hub,
        seed=job.seed,
    )
    validate(config, dataset)
    return config


def validate(config: TrainConfig, dataset: Dataset) -> None:
    problems: list[str] = []
    try:
        spec = config.spec
    except LookupError as exc:
        raise ConfigError([str(exc)]) from None
    if config.method == "full" and not spec.full_finetune:
        problems.append(f"method 'full' is offered for small models only; use 'qlora' or 'lora' for '{spec.id}'")
    if spec.modality == "text" and dataset.modality == "vision":
        problems.append(f"model '{spec.id}' reads text only but dataset '{dataset.id}' has images; pick a vision model")
    if config.lora_vision_tower and spec.modality != "vision":
        problems.append("lora.vision_tower needs a vision model")
    if config.task_kind is TaskKind.classification and len(config.labels) < 2:
        problems.append(f"dataset '{dataset.id}' is a classification set with fewer than two labels")
    if dataset.splits and not dataset.splits.get("train"):
        problems.append(f"dataset '{dataset.id}' has no training examples")
    if problems:
        raise ConfigError(problems)
