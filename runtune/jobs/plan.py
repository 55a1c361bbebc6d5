"""The job plan: what a fine-tuning job trains with, decided once, by this module alone.

`plan_job` runs when the job's training file is ready (at create, or when the file finishes
processing): it validates the job against its model and dataset (every rule the trainer used to
check again), resolves the `auto` hyperparameters (runtune/jobs/hyperparameters.py), sets the
learning rate, picks the GPU and estimates the run where this deployment trains (`Estimator`:
runtune/estimate.py, calibrated from runtune/throughput.py). The training service stores the result on
the job (`Job.plan`, a `TrainConfig`; `with_plan` also writes the parts the API shows) and the
trainer reads it verbatim (runtune/training/config.py): nothing is resolved twice, so a job
trains with exactly the numbers it shows. Torch-free: the training service imports it.

Jobs stored before plans existed get theirs from this same function when they launch.

Continued fine-tuning (`model` is one of the owner's `ft:` models, its `Parent`): everything is sized,
checked and priced on the chain's root base (`Job.lineage.root`), the plan's `model`, and the run
trains the parent's adapter further, so its LoRA shape is the parent's (`continued_options`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

from runtune import compute, throughput
from runtune.compute import ComputeChoice
from runtune.errors import InvalidRequest
from runtune.estimate import Estimate, RunShape, RunTiming, Where, estimate, machine_name
from runtune.jobs import hyperparameters
from runtune.jobs.hyperparameters import Resolved, SequenceLengths
from runtune.models import registry
from runtune.models.registry import ModelSpec
from runtune.ports.metadata import MetadataStore
from runtune.schemas import Dataset, TaskKind
from runtune.schemas.datasets import SplitOptions
from runtune.schemas.jobs import (
    DEFAULT_BETA,
    EstimateSummary,
    EvaluationOptions,
    Hyperparameters,
    Job,
    Lineage,
    LoraOptions,
    MethodType,
    RuntuneOptions,
    TrainConfig,
    shown_method,
)

# The method's base learning rate, which `learning_rate_multiplier` multiplies.
BASE_LEARNING_RATE = {"qlora": 2e-4, "lora": 2e-4, "full": 2e-5}
OPTIONS_PARAM = "method.supervised.runtune"
# The user's secrets the trainer reads a Hugging Face token from, in order (jobs/trainer/recipe.py).
HUB_TOKEN_SECRETS = ("hf_token", "huggingface")


@dataclass(frozen=True)
class Planned:
    """A job's plan, why each `auto` hyperparameter became its number, the run's estimate and what
    to warn about before launch (the estimate's warnings, a missing Hub token)."""

    plan: TrainConfig
    auto: dict[str, str]
    estimate: Estimate
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> EstimateSummary:
        """What the job shows of its estimate (`Job.estimate`): the range, its basis, the warnings."""
        return EstimateSummary.of(self.estimate, self.warnings)


@dataclass(frozen=True)
class Estimator:
    """How a deployment reckons a run's time and cost: `where` its trainers run (Cloud Run GPUs, or
    the local platform's machine with or without a GPU) and, given the `store`, calibrated from its
    own finished runs of the same model, machine and method (runtune/throughput.py) once there are
    some; the Vertex AI `machines` it offers besides (runtune/compute.py), and the Cloud Run trainer
    job's task timeout, past which a run is offered Vertex instead. The default: published figures
    on Cloud Run."""

    where: Where = "cloud"
    store: MetadataStore | None = None
    machines: tuple[str, ...] = ()
    cloud_run_timeout_s: int | None = None

    def measured(self, model: ModelSpec, gpu: str, method: str) -> list[RunTiming]:
        if self.store is None:
            return []
        machine = machine_name(gpu, self.where)
        return throughput.measured(self.store, model=model.id, machine=machine, method=method)

    def estimate(
        self,
        model: ModelSpec,
        shape: RunShape,
        *,
        gpu: str,
        offered: Sequence[str],
        compute_choice: ComputeChoice = "auto",
        spot: bool = False,
        max_hours: float | None = None,
    ) -> Estimate:
        def reckon(runs: Sequence[RunTiming] = ()) -> Estimate:
            return estimate(
                model.figures(),
                shape,
                gpu=gpu,
                offered=offered,
                where=self.where,
                calibration=runs,
                model_name=model.id,
            )

        published = reckon()
        runs = self.measured(model, published.gpu, shape.method) if published.gpu else []
        fit = reckon(runs) if runs else published
        if not self.machines:
            return fit
        return compute.place(
            model.figures(),
            shape,
            fit,
            machines=self.machines,
            task_timeout_s=self.cloud_run_timeout_s,
            choice=compute_choice,
            spot=spot,
            max_hours=max_hours,
        )


PUBLISHED = Estimator()


@dataclass(frozen=True)
class Parent:
    """The `ft:` model a continued job trains on from: its id, its lineage, its adapter folder and
    that adapter's LoRA shape (its job's plan's; the stored options of a job planned before plans)."""

    model: str
    lineage: Lineage
    adapter: str
    lora: LoraOptions

    @classmethod
    def of(cls, job: Job, adapter: str) -> Parent:
        assert job.fine_tuned_model is not None
        lora = job.plan.lora if job.plan is not None else job.options.lora
        return cls(job.fine_tuned_model, job.lineage_or_base, adapter, lora)


def lineage_of(model_id: str, parent: Parent | None) -> Lineage:
    """A new job's lineage: its base model alone, or its parent's chain with the parent added."""
    return parent.lineage.continued(parent.model) if parent is not None else Lineage.of_base(model_id)


def lora_asked(options: RuntuneOptions) -> set[str]:
    """The LoRA fields a request set itself (only a request knows: stored options have them all)."""
    return set(options.lora.model_fields_set) if "lora" in options.model_fields_set else set()


def continued_options(
    options: RuntuneOptions, parent: Parent, *, asked: Collection[str] = (), param: str = OPTIONS_PARAM
) -> RuntuneOptions:
    """`options` for a job that continues `parent`: the parent's LoRA shape (its adapter trains on as
    it is, so the new adapter holds the whole delta from the root base, which the engine serves).
    A LoRA field in `asked` (set in the request) that differs is a 400 naming it; full fine-tuning
    (which would need the merged weights, and whose model the engine cannot serve) is refused."""
    if options.method == "full":
        raise InvalidRequest(
            f"A job on '{parent.model}' continues its LoRA adapter; use 'qlora' or 'lora', or fully fine-tune "
            f"its base '{parent.lineage.root}'",
            param=f"{param}.method",
        )
    for name in sorted(asked):
        value, kept = getattr(options.lora, name), getattr(parent.lora, name)
        if value != kept:
            raise InvalidRequest(
                f"lora.{name} is {value!r}, but '{parent.model}' has an adapter with {kept!r}, which a continued "
                "job trains further as it is; leave lora unset",
                param=f"{param}.lora.{name}",
            )
    return options.model_copy(update={"lora": parent.lora})


def check_model(model_id: str) -> ModelSpec:
    model = registry.lookup(model_id)
    if model is None:
        raise InvalidRequest(
            f"Model '{model_id}' is not supported; GET /v1/models lists the base models", param="model"
        )
    return model


def check_offered(gpu: str, offered: Sequence[str], param: str) -> None:
    """Refuse a GPU this deployment has no trainer job for (a 400 naming it and what is offered)."""
    if gpu != "auto" and gpu not in offered:
        raise InvalidRequest(
            f"GPU '{gpu}' is not offered by this deployment; it offers {', '.join(offered)} "
            "(or 'auto', the smallest that fits)",
            param=param,
            code="gpu_not_offered",
        )


def check_options(
    model: ModelSpec,
    options: RuntuneOptions,
    offered: Sequence[str],
    *,
    param: str = OPTIONS_PARAM,
    objective: MethodType = "supervised",
    machines: Sequence[str] = (),
) -> None:
    """The checks that need no dataset (answered at create, even while the file processes, and by
    the estimate, whose request has the options at `param`); `machines`: the Vertex AI machines the
    deployment offers."""
    if objective == "dpo" and options.method == "full":
        # The reference is the model with its adapter switched off: full fine-tuning has no adapter,
        # and a second copy of the weights is what DPO on LoRA avoids.
        raise InvalidRequest(
            "A dpo job trains a LoRA adapter (its reference model is the base with the adapter off); use 'qlora' "
            "or 'lora'",
            param=f"{param}.method",
        )
    if options.compute == "vertex" and not machines:
        raise InvalidRequest(
            "This deployment offers no Vertex AI machines; use compute 'cloud_run' or 'auto'",
            param=f"{param}.compute",
            code="compute_not_offered",
        )
    if options.method == "full" and not model.full_finetune:
        raise InvalidRequest(
            f"Full fine-tuning of '{model.id}' does not fit one GPU; use 'qlora' or 'lora'", param=f"{param}.method"
        )
    if options.lora.vision_tower and model.modality != "vision":
        raise InvalidRequest(
            f"lora.vision_tower adapts a vision encoder, and '{model.id}' reads text only; pick a vision model",
            param=f"{param}.lora.vision_tower",
        )
    check_offered(options.gpu, offered, f"{param}.gpu")


def check_objective(objective: MethodType, dataset: Dataset, param: str) -> None:
    """A `dpo` job trains on preference pairs, and only a `dpo` job does (a 400 naming the file)."""
    pairs = dataset.task_kind is TaskKind.preference
    if objective == "dpo" and not pairs:
        raise InvalidRequest(
            f"A dpo job trains on preference pairs, and dataset '{dataset.id}' is a {dataset.task_kind or 'generation'}"
            " set; upload a preference JSONL (input, preferred_output, non_preferred_output) or a table mapped to "
            "chosen and rejected",
            param=param,
            code="invalid_dataset_kind",
        )
    if objective != "dpo" and pairs:
        raise InvalidRequest(
            f"Dataset '{dataset.id}' is a preference set (pairs of answers), which a {objective} job cannot train "
            "on; use method type 'dpo'",
            param=param,
            code="invalid_dataset_kind",
        )


def check_dataset(model: ModelSpec, training: Dataset) -> None:
    """The checks that need the ready training set."""
    if model.modality == "text" and training.modality == "vision":
        raise InvalidRequest(
            f"Model '{model.id}' reads text only, but dataset '{training.id}' has images; pick a vision model",
            param="model",
        )
    if training.splits and not training.splits.get("train"):
        # The trainer trains on the `train` split alone; the others are for validation and testing.
        raise InvalidRequest(f"Dataset '{training.id}' has no training examples", param="training_file")
    if training.task_kind is TaskKind.classification and len(training.labels) < 2:
        raise InvalidRequest(
            f"Dataset '{training.id}' is a classification set with fewer than two labels", param="training_file"
        )


def hub_warning(model: ModelSpec, *, has_token: bool) -> str | None:
    """What to say before launch when the model's weights come from the Hugging Face Hub and the
    user has no token stored (one of `HUB_TOKEN_SECRETS`)."""
    if model.hf_id is None or has_token:
        return None
    return (
        f"{model.id} downloads its weights from the Hugging Face Hub, which needs your Hugging Face token: "
        f"accept the model's license on huggingface.co/{model.hf_id}, then add the token in Settings "
        "(the 'hf_token' secret) before launching"
    )


def held_out_sources(training_id: str, validation_id: str | None, split: str) -> list[tuple[str, str]]:
    """Where the trainer's evaluation examples come from, (dataset, split) in order, the first with
    examples taken (jobs/trainer/recipe.py `held_out`): the validation dataset if given, else the
    asked split of the training set, else its other held-out split."""
    if validation_id:
        return [(validation_id, name) for name in ("train", "validation", "test")]
    other = "validation" if split == "test" else "test"
    return [(training_id, split), (training_id, other)]


def held_out_examples(evaluation: EvaluationOptions, training: Dataset, validation: Dataset | None = None) -> int:
    """How many examples the trainer evaluates on, capped by `evaluation.max_samples`."""
    sizes = {
        (dataset.id, name): count
        for dataset in (training, validation)
        if dataset
        for name, count in dataset.splits.items()
    }
    validation_id = validation.id if validation else None
    for source in held_out_sources(training.id, validation_id, evaluation.split):
        if sizes.get(source):
            return min(sizes[source], evaluation.max_samples or sizes[source])
    return 0


def typical_held_out(evaluation: EvaluationOptions, examples: int) -> int:
    """`held_out_examples` for `examples` training examples of an upload split by ingestion's
    defaults (SplitOptions): what the estimate assumes when it is given a count, not a dataset."""
    split = SplitOptions()
    share = split.test if evaluation.split == "test" else split.validation
    count = round(examples * share / (1 - split.validation - split.test))
    return min(count, evaluation.max_samples or count)


def learning_rate(model: ModelSpec, method: str, multiplier: float) -> float:
    """The optimizer's peak rate: the method's base rate, the model's scale (the tiny random models
    need ~10x), and the job's multiplier."""
    return BASE_LEARNING_RATE[method] * model.learning_rate_scale * multiplier


def training_examples(training: Dataset) -> int:
    """The examples a run trains on: the `train` split's (the trainer reads no other)."""
    return training.splits.get("train") or 1


def size_run(
    model: ModelSpec,
    given: Hyperparameters,
    options: RuntuneOptions,
    examples: int,
    lengths: SequenceLengths,
    offered: Sequence[str],
    *,
    held_out: int = 0,
    estimator: Estimator = PUBLISHED,
) -> tuple[Resolved, Estimate]:
    """`given` with its `auto` values resolved for `examples`, and the run's estimate (evaluating
    `held_out` examples) on the GPU it gets (no GPU when none offered holds it), as `estimator`
    reckons it. The estimate endpoint's answer, and the plan's numbers. An `auto` method is resolved
    first (`resolve_method`)."""
    options, _ = resolve_method(model, given, options, examples, lengths, offered)
    resolved = hyperparameters.resolve(
        given, model=model, examples=examples, options=options, lengths=lengths, offered=offered
    )
    shape = hyperparameters.run_shape(
        options,
        lengths,
        examples,
        epochs=resolved.epochs,
        batch_size=resolved.batch_size,
        held_out=held_out,
        # The tiny models are built on the spot; the service cannot see weights staged in the
        # bucket (it has no bucket access), so the others are reckoned from the Hub.
        weights_from="local" if model.is_tiny else "hub",
    )
    return resolved, estimator.estimate(
        model,
        shape,
        gpu=options.gpu,
        offered=offered,
        compute_choice=options.compute,
        spot=options.spot,
        max_hours=options.max_hours,
    )


def resolve_method(
    model: ModelSpec,
    given: Hyperparameters,
    options: RuntuneOptions,
    examples: int,
    lengths: SequenceLengths,
    offered: Sequence[str],
) -> tuple[RuntuneOptions, str | None]:
    """`options` with an `auto` method decided from the GPU memory table, and why: bf16 LoRA (no
    4-bit weights to dequantise in every matmul) where it fits the GPU that QLoRA would get, at the
    batch QLoRA would get; QLoRA otherwise. A method the job names is kept as it is (None: no reason)."""
    if options.method != "auto":
        return options, None
    quantized = options.model_copy(update={"method": "qlora"})
    plain = options.model_copy(update={"method": "lora"})
    # Each sized as named (size_run resolves no method then).
    q_resolved, q_fit = size_run(model, given, quantized, examples, lengths, offered)
    l_resolved, l_fit = size_run(model, given, plain, examples, lengths, offered)
    if l_fit.gpu is not None and l_fit.gpu == q_fit.gpu and l_resolved.batch_size == q_resolved.batch_size:
        return plain, (
            f"bf16 LoRA (no 4-bit dequantisation) fits the {l_fit.gpu_label} at batch {l_resolved.batch_size} "
            f"({l_fit.memory_gib:.1f} GiB)"
        )
    if q_fit.gpu is None:
        return quantized, "QLoRA, the smallest footprint"
    return quantized, (
        f"QLoRA: bf16 LoRA ({l_fit.memory_gib:.1f} GiB) does not fit the {q_fit.gpu_label} at batch "
        f"{q_resolved.batch_size}"
    )


def plan_job(
    job: Job,
    training: Dataset,
    *,
    offered: Sequence[str],
    parent: Parent | None = None,
    validation: Dataset | None = None,
    estimator: Estimator = PUBLISHED,
    has_hub_token: bool = True,
) -> Planned:
    """The plan of `job` on its ready training set (and `validation` set, when it has one), among the
    `offered` GPUs, estimated by `estimator`; an `InvalidRequest` naming the field when the job cannot
    run (the same code, message and param at create and later). A continued job (its lineage names a
    parent) needs that `parent`: the plan is of the chain's root base with the parent's adapter to
    start from. Without `has_hub_token` a model from the Hub is warned about."""
    lineage = job.lineage_or_base
    if lineage.is_continued != (parent is not None) or (parent is not None and parent.model != lineage.parent):
        raise ValueError(f"job {job.id} continues {lineage.parent!r}, planned with parent {parent!r}")
    model = check_model(lineage.root)
    method = job.method_asked
    param = method.options_param
    options = continued_options(job.options, parent, param=param) if parent is not None else job.options
    check_options(model, options, offered, param=param, objective=method.type, machines=estimator.machines)
    check_dataset(model, training)
    check_objective(method.type, training, "training_file")
    if validation is not None:
        check_objective(method.type, validation, "validation_file")
    beta, beta_reason = resolve_beta(method.beta) if method.type == "dpo" else (DEFAULT_BETA, {})
    examples, lengths = training_examples(training), SequenceLengths.of_stats(training.stats, model)
    held_out = held_out_examples(options.evaluation, training, validation)
    options, method_reason = resolve_method(model, job.hyperparameters, options, examples, lengths, offered)
    resolved, fit = size_run(
        model, job.hyperparameters, options, examples, lengths, offered, held_out=held_out, estimator=estimator
    )
    if options.speed.batch_tokens is not None and options.speed.batch_tokens < options.max_length:
        raise InvalidRequest(
            f"speed.batch_tokens ({options.speed.batch_tokens}) must hold one sequence of max_length "
            f"({options.max_length})",
            param=f"{param}.speed.batch_tokens",
        )
    if fit.gpu is None:
        raise InvalidRequest(f"This run cannot fit a GPU: it {fit.reason}", param=param, code="does_not_fit")
    multiplier = float(resolved.hyperparameters.learning_rate_multiplier)  # type: ignore[arg-type]
    plan = TrainConfig(
        job_id=job.id,
        owner=job.owner,
        model=model.id,
        parent_model=parent.model if parent is not None else None,
        parent_adapter=parent.adapter if parent is not None else None,
        dataset_id=job.training_file,
        validation_dataset_id=job.validation_file,
        task_kind=training.task_kind or TaskKind.generation,
        labels=list(training.labels),
        objective=method.type,
        beta=beta,
        method=options.method,
        **TrainConfig.lora_fields(options.lora),
        max_length=options.max_length,
        epochs=resolved.epochs,
        batch_size=resolved.batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps or 1,
        learning_rate_multiplier=multiplier,
        learning_rate=learning_rate(model, options.method, multiplier),
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
        gpu=fit.gpu,
        compute=fit.compute,
        machine=fit.machine if fit.compute == "vertex" else None,
        gpu_count=fit.gpu_count,
        spot=fit.spot,
        batch_tokens=options.speed.batch_tokens,
        liger_kernels=options.speed.liger_kernels,
        bf16_adapters=options.speed.bf16_adapters,
        torch_compile=options.speed.torch_compile,
    )
    hub = hub_warning(model, has_token=has_hub_token)
    auto = {**resolved.auto, **({"method": method_reason} if method_reason else {}), **beta_reason}
    return Planned(plan, auto, fit, [*fit.warnings, *([hub] if hub else [])])


def resolve_beta(beta: float | str) -> tuple[float, dict[str, str]]:
    """DPO's beta, and why when it was `auto`."""
    if beta != "auto":
        return float(beta), {}
    return DEFAULT_BETA, {
        "beta": f"DPO's usual default ({DEFAULT_BETA}): how strongly the model is kept near the reference"
    }


def with_plan(job: Job, planned: Planned) -> Job:
    """`job` with its plan stored and the parts the API shows written from it: the numbers in
    `hyperparameters` and `method.<type>.hyperparameters` (as OpenAI's job shows them; a dpo job's
    with its beta), why each `auto` one became so (a reason stored earlier is kept), the GPU, the GPU
    seconds the owner's budget counts and the estimate's summary."""
    config = planned.plan
    shown = config.hyperparameters()
    return job.model_copy(
        update={
            "plan": planned.plan,
            "hyperparameters": shown,
            "auto_hyperparameters": {**job.auto_hyperparameters, **planned.auto},
            "method": shown_method(config.objective, config.method_hyperparameters()),
            "gpu": planned.plan.gpu,
            "machine": planned.plan.machine,
            "estimated_gpu_seconds": planned.estimate.gpu_seconds,
            "estimate": planned.summary(),
        }
    )
