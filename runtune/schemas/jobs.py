"""Fine-tuning jobs, their events and checkpoints (OpenAI `fine_tuning.job*` shapes)."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from runtune.compute import ComputeChoice
from runtune.estimate import GPU_NAMES, Backend, Estimate, Where
from runtune.schemas.common import ApiError, ApiModel, OwnedResource, WholeList, ascii_number, new_id
from runtune.schemas.datasets import TaskKind

# "auto" or a GPU of the table (runtune/gpus.json): adding a GPU to the table offers it here too.
GpuChoice = Literal[("auto", *GPU_NAMES)]  # type: ignore[valid-type]


class JobStatus(StrEnum):
    validating_files = "validating_files"
    queued = "queued"
    running = "running"
    # Stopped on the user's request after a checkpoint (or before it started): no execution runs,
    # and resume continues from that checkpoint. Not terminal: left only by resume or cancel.
    paused = "paused"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


# What a running job's trainer may be asked to stop for (the flags the jobs API sets on the job).
StopRequest = Literal["cancel", "pause"]


class JobPhase(StrEnum):
    launching = "launching"
    loading_model = "loading_model"
    preparing_data = "preparing_data"
    training = "training"
    evaluating = "evaluating"
    exporting = "exporting"
    done = "done"


class Hyperparameters(ApiModel):
    """OpenAI's hyperparameters; `auto` is resolved by the training service before launch."""

    model_config = ConfigDict(extra="forbid")

    n_epochs: Annotated[int, Field(ge=1, le=50)] | Literal["auto"] = "auto"
    batch_size: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = "auto"
    # Multiplies the method's base learning rate (2e-4 for LoRA/QLoRA, 2e-5 for full fine-tuning).
    learning_rate_multiplier: Annotated[float, Field(gt=0, le=10)] | Literal["auto"] = "auto"


# DPO's beta when `auto`: the strength of the pull towards the reference model (TRL's and the DPO
# paper's default; OpenAI documents none).
DEFAULT_BETA = 0.1


class DpoHyperparameters(Hyperparameters):
    """OpenAI's DPO hyperparameters: the supervised three and `beta`."""

    beta: Annotated[float, Field(gt=0, le=2)] | Literal["auto"] = "auto"


MethodType = Literal["supervised", "dpo"]


class LoraOptions(ApiModel):
    model_config = ConfigDict(extra="forbid")

    rank: int = Field(default=16, ge=1, le=256)
    alpha: int = Field(default=32, ge=1, le=1024)
    dropout: float = Field(default=0.05, ge=0.0, le=0.5)
    target_modules: Literal["all-linear"] | list[str] = "all-linear"
    vision_tower: bool = Field(default=False, description="Also adapt the vision encoder")


class EvaluationOptions(ApiModel):
    model_config = ConfigDict(extra="forbid")

    baseline: bool = Field(default=False, description="Evaluate the base model before training too")
    method: Literal["label_scoring", "generation", "both"] = "label_scoring"
    split: Literal["validation", "test"] = "test"
    max_samples: int | None = Field(default=None, ge=1, le=100_000)


class ExportOptions(ApiModel):
    model_config = ConfigDict(extra="forbid")

    merged: bool = Field(default=True, description="Also export a merged 16-bit model")
    push_to_hub: str | None = Field(default=None, description="A Hugging Face repo id to push to")


class SpeedOptions(ApiModel):
    """The trainer's speed switches (runtune/jobs/plan.py copies them into the plan; docs/performance.md
    has what each measured). Off by default: each is for the GPU and is measured there by bench/gpu.sh."""

    model_config = ConfigDict(extra="forbid")

    liger_kernels: bool = Field(
        default=False,
        description="Liger's Triton kernels (RMSNorm, RoPE, GeGLU, and the answer tokens' fused linear "
        "cross-entropy); on a machine without a GPU the trainer says so in an event and trains without them",
    )
    batch_tokens: int | None = Field(
        default=None,
        ge=64,
        le=1_048_576,
        description="Batches by token budget: as many examples as fit this many padded tokens (at most "
        "batch_size x 4, never fewer than one), instead of batch_size examples",
    )
    bf16_adapters: bool = Field(
        default=False, description="LoRA adapters in bfloat16 rather than float32 (GPUs with bf16 only)"
    )
    torch_compile: bool = Field(default=False, description="torch.compile the model's decoder layers")


class RuntuneOptions(ApiModel):
    """Runtune's extension of the OpenAI job request (`method.supervised.runtune`): how to train."""

    model_config = ConfigDict(extra="forbid")

    # `auto`: bf16 LoRA (no 4-bit dequantisation) where it fits the GPU QLoRA would get with the same
    # batch, else QLoRA (the plan decides, runtune/jobs/plan.py `resolve_method`).
    method: Literal["auto", "qlora", "lora", "full"] = "auto"
    lora: LoraOptions = Field(default_factory=LoraOptions)
    max_length: int = Field(default=1024, ge=64, le=32_768)
    gradient_accumulation_steps: int | None = Field(default=None, ge=1, le=1024)
    lr_scheduler: Literal["cosine", "linear"] = "cosine"
    warmup_ratio: float = Field(default=0.03, ge=0.0, le=0.5)
    gradient_checkpointing: bool = True
    checkpoint_every_steps: int = Field(default=50, ge=1)
    checkpoint_every_minutes: float = Field(default=10.0, gt=0, le=60)
    evaluation: EvaluationOptions = Field(default_factory=EvaluationOptions)
    export: ExportOptions = Field(default_factory=ExportOptions)
    # A GPU of the table (runtune/gpus.json), or the smallest that fits; the service also refuses
    # one its deployment offers no trainer job for.
    gpu: GpuChoice = "auto"
    speed: SpeedOptions = Field(default_factory=SpeedOptions)
    # Where the run trains (runtune/compute.py): `auto`, the cheapest shape that fits among Cloud Run's
    # GPUs and the deployment's Vertex AI machines; `cloud_run` or `vertex` to insist. `gpu` names a
    # Cloud Run GPU; on Vertex the machine comes with its GPUs.
    compute: ComputeChoice = "auto"
    # Whether Vertex AI may run it on Spot capacity (a fraction of the price; a preempted run restarts
    # and resumes from its newest checkpoint). `auto` then compares Spot prices. Cloud Run has no Spot.
    spot: bool = False
    # With `auto`: only the shapes whose estimate ends within this many hours, the cheapest of them
    # (the fastest that fits, with a warning, when none does).
    max_hours: float | None = Field(default=None, gt=0, le=7 * 24)


class TrainConfig(ApiModel):
    """A job's plan: every number and option its trainer runs with, computed once when its files are
    ready (runtune/jobs/plan.py `plan_job`: `auto` resolved, validated, learning rate, GPU), stored on
    the job (`Job.plan`), read verbatim by the trainer and saved beside its checkpoints. Built by
    hand only in tests and benches, which train outside a job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    job_id: str
    owner: str
    model: str
    dataset_id: str
    validation_dataset_id: str | None = None
    task_kind: TaskKind = TaskKind.generation
    labels: list[str] = Field(default_factory=list)
    # What the run optimises (the API's `method.type`): the answers' cross-entropy, or the DPO loss on
    # preference pairs with `beta`. `method` is how the weights train (the LoRA/QLoRA/full choice).
    objective: MethodType = "supervised"
    beta: float = DEFAULT_BETA
    method: Literal["qlora", "lora", "full"] = "qlora"
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: Literal["all-linear"] | list[str] = "all-linear"
    lora_vision_tower: bool = False
    max_length: int = 1024
    epochs: int = 3
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    learning_rate_multiplier: float = 1.0
    # The optimizer's peak rate: the method's base rate x the model's scale x the multiplier.
    learning_rate: float = 2e-4
    lr_scheduler: Literal["cosine", "linear"] = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = True
    pad_to_multiple_of: int = 8
    # Speed switches (`SpeedOptions`): batches by padded-token budget (None: `batch_size` a batch).
    batch_tokens: int | None = None
    liger_kernels: bool = False
    bf16_adapters: bool = False
    torch_compile: bool = False
    checkpoint_every_steps: int = 50
    checkpoint_every_minutes: float = 10.0
    eval_baseline: bool = False
    eval_method: Literal["label_scoring", "generation", "both"] = "label_scoring"
    eval_split: Literal["validation", "test"] = "test"
    eval_max_samples: int | None = None
    export_merged: bool = True
    push_to_hub: str | None = None
    seed: int = 42
    # The GPU the run was planned for (and launched on); None outside a job.
    gpu: str | None = None
    # Where: Cloud Run (`gpu`'s trainer job), or the Vertex AI `machine` (runtune/compute.py) with
    # `gpu_count` GPUs, data-parallel under torchrun when more than one, on Spot capacity if `spot`.
    compute: Backend = "cloud_run"
    machine: str | None = None
    gpu_count: int = 1
    spot: bool = False
    # Continued fine-tuning (`model` was one of the owner's `ft:` models): that model's id and its
    # adapter folder, which the trainer loads onto `model` (the chain's root base) as trainable, so
    # the new adapter holds the whole delta from the root. None when training starts from the base.
    parent_model: str | None = None
    parent_adapter: str | None = None

    def hyperparameters(self) -> Hyperparameters:
        """OpenAI's three hyperparameters as the plan fixed them (what the job shows)."""
        return Hyperparameters(
            n_epochs=self.epochs, batch_size=self.batch_size, learning_rate_multiplier=self.learning_rate_multiplier
        )

    def method_hyperparameters(self) -> Hyperparameters:
        """What `method.<type>.hyperparameters` shows: DPO's with its beta."""
        shown = self.hyperparameters()
        if self.objective == "dpo":
            return DpoHyperparameters(**shown.model_dump(), beta=self.beta)
        return shown

    # The plan holds `LoraOptions` flat, each field `lora_`-prefixed (the trainer reads one record):
    # these two are the one mapping between the shapes.
    @property
    def lora(self) -> LoraOptions:
        """The run's LoRA shape as a request's `runtune.lora` names it."""
        return LoraOptions(**{name: getattr(self, f"lora_{name}") for name in LoraOptions.model_fields})

    @staticmethod
    def lora_fields(lora: LoraOptions) -> dict[str, Any]:
        """`lora` as the plan's `lora_*` fields."""
        return {f"lora_{name}": getattr(lora, name) for name in LoraOptions.model_fields}


class Lineage(ApiModel):
    """Where a job's model comes from (Runtune's extension of the job and of the tuned Model object):
    `root`, the registry's base model at the start of the chain (what the trainer loads, the engine
    serves the adapter on and an evaluation compares against); `parent`, the model the job trained
    from (`root` itself, or the owner's `ft:` model it continued); `chain`, every model from `root`
    to `parent`, root first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    root: str
    parent: str
    chain: list[str]

    @classmethod
    def of_base(cls, base: str) -> Lineage:
        return cls(root=base, parent=base, chain=[base])

    def continued(self, model: str) -> Lineage:
        """The lineage of a job that continues `model`, whose own lineage this is."""
        return Lineage(root=self.root, parent=model, chain=[*self.chain, model])

    @property
    def is_continued(self) -> bool:
        return self.parent != self.root


class SupervisedShown(ApiModel):
    """`method.supervised` as a job shows it: the hyperparameters (the plan's numbers once planned)."""

    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)


class DpoShown(ApiModel):
    """`method.dpo` as a job shows it: the hyperparameters with DPO's beta."""

    hyperparameters: DpoHyperparameters = Field(default_factory=DpoHyperparameters)


class SupervisedJobMethod(ApiModel):
    """A supervised job's `method`; its Runtune options are the job's own `options`."""

    type: Literal["supervised"] = "supervised"
    supervised: SupervisedShown = Field(default_factory=SupervisedShown)


class DpoJobMethod(ApiModel):
    """A DPO job's `method`."""

    type: Literal["dpo"] = "dpo"
    dpo: DpoShown = Field(default_factory=DpoShown)


# `Job.method`: OpenAI's shape, only the key of its `type` beside it.
ShownMethod = Annotated[SupervisedJobMethod | DpoJobMethod, Field(discriminator="type")]


class EstimateSummary(ApiModel):
    """`Job.estimate`: what the job keeps of its estimate before launch (`Planned.summary`): the
    range of its time and cost, what that is based on, where it trains, and the warnings (a Hub token
    missing, hours on a CPU)."""

    seconds: int | None
    seconds_low: int | None
    seconds_high: int | None
    usd: float | None
    usd_low: float | None
    usd_high: float | None
    basis: str | None
    calibrated_runs: int
    machine: str | None
    # Recorded since Vertex AI was offered; older jobs trained on Cloud Run, one GPU, on demand.
    compute: Backend = "cloud_run"
    gpu_count: int = 1
    spot: bool = False
    warnings: list[str] = Field(default_factory=list)

    @classmethod
    def of(cls, estimate: Estimate, warnings: list[str]) -> EstimateSummary:
        """The summary of `estimate`, with the plan's `warnings` (the estimate's and the Hub's)."""
        kept = estimate.model_dump(include=set(cls.model_fields) - {"warnings"})
        return cls.model_validate({**kept, "warnings": warnings})


class Job(OwnedResource):
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    # As asked: a base model of the registry, or one of the owner's `ft:` models (continued
    # fine-tuning; `lineage.root` is then the base it was trained on).
    model: str
    status: JobStatus = JobStatus.validating_files
    training_file: str
    validation_file: str | None = None
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    # The hyperparameters asked for as `auto`, each with why it became its number (once planned,
    # `hyperparameters` shows the plan's numbers, as OpenAI's job does); runtune/jobs/plan.py.
    auto_hyperparameters: dict[str, str] = Field(default_factory=dict)
    method: ShownMethod = Field(default_factory=SupervisedJobMethod)
    fine_tuned_model: str | None = None
    # The `fine_tuned_model_checkpoint` with the lowest validation loss so far (jobs with validation data).
    best_checkpoint: str | None = None
    # When its owner deleted the tuned model (`DELETE /v1/models/{id}`): the job stays in the history
    # with its `fine_tuned_model`, as OpenAI keeps it, but that id resolves nowhere any more.
    model_deleted_at: int | None = None
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
    # How to train (validated `RuntuneOptions`, stored as given so the trainer reads what was asked).
    options: RuntuneOptions = Field(default_factory=RuntuneOptions)
    # Runtune's extra fields: the finer phase, progress, and where the trainer runs.
    phase: JobPhase | None = None
    steps_completed: int = 0
    total_steps: int | None = None
    seconds_remaining: int | None = None
    # The Cloud Run GPU the trainer runs on (the one asked for, or the estimate's choice); the
    # launcher runs that GPU's trainer job. None only on jobs stored before it was recorded.
    gpu: str | None = None
    # The Vertex AI machine type the run trains on (None: a Cloud Run GPU).
    machine: str | None = None
    # The estimate's GPU seconds for the run on that GPU (all the machine's GPUs on Vertex): what counts
    # against its owner's monthly GPU budget (runtune/quotas.py).
    estimated_gpu_seconds: int | None = None
    # The estimate before launch: its range, what it is based on, and its warnings (a Hub token
    # missing, hours on a CPU): `runtune.jobs.plan.Planned.summary`.
    estimate: EstimateSummary | None = None
    execution_name: str | None = Field(default=None, exclude=True)
    heartbeat_at: float | None = Field(default=None, exclude=True)
    cancel_requested: bool = Field(default=False, exclude=True)
    # Set by `POST .../pause` on a running job: the trainer checkpoints at its next safe point and
    # marks the job `paused`.
    pause_requested: bool = Field(default=False, exclude=True)
    # What the trainer runs with, set once when the files are ready (runtune/jobs/plan.py); None
    # while the job waits for its files. Stored, never shown: the API shows its parts above.
    plan: TrainConfig | None = Field(default=None, exclude=True)
    # Where the model comes from; None on jobs stored before lineage was recorded (all trained
    # from their base `model`): read it through `lineage_or_base`.
    lineage: Lineage | None = None
    runtune: dict[str, Any] = Field(default_factory=dict)

    @field_validator("method", mode="before")
    @classmethod
    def _oldest_supervised(cls, method: Any) -> Any:
        """The oldest jobs stored `{}`: supervised, as `JobMethod` reads an empty method."""
        return method or SupervisedJobMethod()

    @property
    def method_asked(self) -> JobMethod:
        """`method` as a `JobMethod` (the settings a request would give)."""
        return JobMethod.model_validate(self.method.model_dump())

    @property
    def lineage_or_base(self) -> Lineage:
        return self.lineage or Lineage.of_base(self.model)

    @property
    def base_model(self) -> str:
        """The registry's base model under the job's model: what is loaded, served and compared."""
        return self.lineage_or_base.root

    def to_document(self) -> dict[str, Any]:
        document = super().to_document()
        # Internal fields are excluded from the API but must be stored.
        document.update(
            execution_name=self.execution_name,
            heartbeat_at=self.heartbeat_at,
            cancel_requested=self.cancel_requested,
            pause_requested=self.pause_requested,
            plan=self.plan.model_dump(mode="json") if self.plan else None,
        )
        return document

    @property
    def stop_requested(self) -> StopRequest | None:
        """What the trainer was asked to stop for, if anything; a cancel outranks a pause."""
        if self.cancel_requested:
            return "cancel"
        return "pause" if self.pause_requested else None


def job_path(job_id: str) -> str:
    return f"jobs/{job_id}"


def event_path(job_id: str, seq: int) -> str:
    """Events are numbered per job; the zero-padded number keeps document ids in order."""
    return f"{job_path(job_id)}/events/{seq:08d}"


def checkpoint_path(job_id: str, step: int) -> str:
    """A resume state's document (runtune/training/checkpoints.py; pruned to the newest few)."""
    return f"{job_path(job_id)}/checkpoints/{step:08d}"


def model_checkpoint_path(job_id: str, step: int) -> str:
    """A model checkpoint's document (what `GET .../checkpoints` lists; never pruned)."""
    return f"{job_path(job_id)}/model_checkpoints/{step:08d}"


def tuned_model_id(base: str, job_id: str) -> str:
    """A job's `fine_tuned_model`."""
    return f"ft:{base}:{job_id}"


def checkpoint_model_id(base: str, job_id: str, step: int) -> str:
    """A checkpoint's `fine_tuned_model_checkpoint`: the job's model id and the step, as OpenAI names them."""
    return f"{tuned_model_id(base, job_id)}:ckpt-step-{step}"


def checkpoint_id(job_id: str, step: int) -> str:
    return f"ftckpt-{job_id.removeprefix('ftjob-')}-{step:06d}"


_CKPT_STEP = re.compile(r"ckpt-step-([1-9][0-9]{0,8})")


def parse_tuned_model_id(model: str) -> tuple[str, str, int | None] | None:
    """(base, job id, checkpoint step or None) of `ft:<base>:<job>[:ckpt-step-N]`, else None."""
    parts = model.split(":")
    if len(parts) == 3 and parts[0] == "ft":
        return parts[1], parts[2], None
    if len(parts) == 4 and parts[0] == "ft" and (step := _CKPT_STEP.fullmatch(parts[3])):
        return parts[1], parts[2], int(step.group(1))
    return None


def event_id(job_id: str, seq: int) -> str:
    return f"ftevent-{job_id.removeprefix('ftjob-')}-{seq:08d}"


def seq_of_event_id(value: str) -> int | None:
    """The sequence number inside an event id (or a bare number, as SSE's Last-Event-ID may send)."""
    return ascii_number(value.rsplit("-", 1)[-1])


class MetricsPoint(ApiModel):
    """One step of the training curve: a metrics event's `data` and a point of `GET .../metrics`.
    Open: the trainer reports what the step measured (`loss`, `lr`, `grad_norm`, `tokens_per_s`,
    `valid_loss` on a validation step, DPO's rewards, ...), each a number, or null where it was not
    finite."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, int | float | None] = Field(init=False)

    step: int


class MetricsPage(ApiModel):
    """`GET /v1/fine_tuning/jobs/{id}/metrics`: points in step order; the next page is `after_step`
    = the last point's step."""

    object: Literal["list"] = "list"
    data: list[MetricsPoint]
    has_more: bool


class JobEvent(ApiModel):
    """A job's event, stored at `event_path(job_id, seq)` with `seq` alongside its API fields."""

    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int
    level: Literal["info", "warn", "error"] = "info"
    message: str
    type: Literal["message", "metrics"] = "message"
    # A metrics event's point; a message event has none.
    data: MetricsPoint | None = None
    seq: int = Field(exclude=True, default=0)


class Checkpoint(ApiModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int
    fine_tuned_model_checkpoint: str
    fine_tuning_job_id: str
    step_number: int
    metrics: dict[str, float] = Field(default_factory=dict)
    # Runtune's extra: the job's best checkpoint (lowest validation loss), set when listed.
    best: bool = False


class SupervisedMethod(ApiModel):
    model_config = ConfigDict(extra="forbid")

    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    runtune: RuntuneOptions = Field(default_factory=RuntuneOptions)


class DpoMethod(ApiModel):
    model_config = ConfigDict(extra="forbid")

    hyperparameters: DpoHyperparameters = Field(default_factory=DpoHyperparameters)
    runtune: RuntuneOptions = Field(default_factory=RuntuneOptions)


class JobMethod(ApiModel):
    """OpenAI's `method`: its `type` and that type's settings (the other type's refused)."""

    model_config = ConfigDict(extra="forbid")

    type: MethodType = "supervised"
    supervised: SupervisedMethod | None = None
    dpo: DpoMethod | None = None

    @model_validator(mode="after")
    def _settings_of_its_type(self) -> JobMethod:
        other = "dpo" if self.type == "supervised" else "supervised"
        if getattr(self, other) is not None:
            raise ValueError(f"method.{other} is given, but method.type is '{self.type}'")
        if self.type == "supervised" and self.supervised is None:
            self.supervised = SupervisedMethod()
        if self.type == "dpo" and self.dpo is None:
            self.dpo = DpoMethod()
        return self

    @property
    def settings(self) -> SupervisedMethod | DpoMethod:
        chosen = self.supervised if self.type == "supervised" else self.dpo
        assert chosen is not None  # filled in by the validator
        return chosen

    @property
    def runtune(self) -> RuntuneOptions:
        return self.settings.runtune

    @property
    def options_param(self) -> str:
        """Where the Runtune options sit in the request, as errors name them."""
        return options_param(self.type)

    def shown(self) -> SupervisedJobMethod | DpoJobMethod:
        """What a job stores and shows of it: the type and its hyperparameters (the options are the job's own)."""
        return shown_method(self.type, self.settings.hyperparameters)

    @property
    def beta(self) -> float | Literal["auto"]:
        return self.dpo.hyperparameters.beta if self.dpo is not None else "auto"


def shown_method(method_type: MethodType, hyperparameters: Hyperparameters) -> SupervisedJobMethod | DpoJobMethod:
    """A job's `method`: its type with these hyperparameters (a DPO job's with its beta)."""
    settings = {"hyperparameters": hyperparameters.model_dump()}
    if method_type == "dpo":
        return DpoJobMethod(dpo=DpoShown.model_validate(settings))
    return SupervisedJobMethod(supervised=SupervisedShown.model_validate(settings))


def options_param(method_type: str) -> str:
    return f"method.{method_type}.runtune"


class CreateJobRequest(ApiModel):
    """`POST /v1/fine_tuning/jobs`, as the `openai` SDK sends it (plus `method.supervised.runtune`)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=200)
    training_file: str = Field(min_length=1, max_length=128)
    validation_file: str | None = Field(default=None, min_length=1, max_length=128)
    # The legacy top-level form; `method.supervised.hyperparameters` wins when both are given.
    hyperparameters: Hyperparameters | None = None
    method: JobMethod = Field(default_factory=JobMethod)
    suffix: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_-]*$")
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] | None = Field(
        default=None, max_length=16
    )
    integrations: list[dict[str, Any]] | None = None

    def resolved_hyperparameters(self) -> Hyperparameters:
        """OpenAI's three as given (the method's, else the legacy top-level ones); DPO's beta is the method's."""
        given = Hyperparameters(
            **self.method.settings.hyperparameters.model_dump(
                include={"n_epochs", "batch_size", "learning_rate_multiplier"}
            )
        )
        if given == Hyperparameters() and self.hyperparameters is not None:
            return self.hyperparameters
        return given

    def new_job(
        self,
        owner: str,
        *,
        options: RuntuneOptions | None = None,
        lineage: Lineage | None = None,
        status: JobStatus = JobStatus.validating_files,
    ) -> Job:
        """The job this request creates, before planning: what it asked for as given, with `options`
        (the method's Runtune options unless the caller settled them, e.g. for a continued model)."""
        return Job(
            id=new_id("ftjob"),
            owner=owner,
            model=self.model,
            training_file=self.training_file,
            validation_file=self.validation_file,
            hyperparameters=self.resolved_hyperparameters(),
            method=self.method.shown(),
            options=self.method.runtune if options is None else options,
            suffix=self.suffix,
            seed=self.seed if self.seed is not None else 42,
            metadata=self.metadata,
            integrations=self.integrations or [],
            status=status,
            lineage=lineage,
        )


class JobDeleted(ApiModel):
    """`DELETE /v1/fine_tuning/jobs/{id}`: what went with the job (its model, checkpoints, exports)."""

    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    deleted: Literal[True] = True
    fine_tuned_model: str | None
    checkpoints: int
    exports: list[str]


class GpuOffer(ApiModel):
    """A GPU this deployment trains on (`runtune/gpus.json`), with its trainer job's shape and price."""

    object: Literal["gpu"] = "gpu"
    id: str
    label: str
    # As runtune/gpus.json gives it: `int | float`, so 24 stays 24 in the JSON.
    memory_gib: int | float
    cpu: int
    instance_memory_gib: int
    usd_per_hour: float


class GpuList(WholeList[GpuOffer]):
    """`GET /v1/fine_tuning/gpus`: the GPUs `runtune.gpu` may name besides "auto", and where the
    trainers run."""

    where: Where


class RunEstimate(Estimate):
    """`POST /v1/fine_tuning/estimate`: the estimate of the run the plan resolved, with what it resolved."""

    object: Literal["fine_tuning.estimate"] = "fine_tuning.estimate"
    model: str
    hyperparameters: Hyperparameters
    # The hyperparameters asked for as "auto", each with why it became its number.
    auto_hyperparameters: dict[str, str]
    # Real Gemma weights come from the Hub: whether this user's token is missing, said before launch.
    needs_hub_token: bool
