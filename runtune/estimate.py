"""Before a GPU starts: how many tokens and steps a run takes, how much GPU memory it needs, which
Cloud Run GPU fits, what it will cost and how long it will take, and how much host memory it needs
on the instance it runs on (whose disk is memory too).

The figures are deliberately simple and conservative (documented below). The GPU table is
runtune/gpus.json (Terraform sizes the trainer jobs from it too); its prices carry their source and
date and can be overridden with `RUNTUNE_GPU_PRICES` (JSON).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Method = Literal["qlora", "lora", "full"]
# Where the trainer runs (see `estimate`).
Where = Literal["cloud", "local-gpu", "local-cpu"]
# Where the base weights come from: the Hub (downloaded), the bucket (staged under models/) or this
# machine (the tiny models, built on the spot).
WeightsFrom = Literal["hub", "bucket", "local"]
GIB = 1024**3


@dataclass(frozen=True)
class Gpu:
    name: str  # Cloud Run's accelerator name
    label: str
    memory_gib: float
    # Dense bf16 throughput and the share of it a fine-tuning step reaches (MFU).
    bf16_tflops: float
    mfu: float
    # Cloud Run's minimum CPU and memory for an instance with this GPU.
    min_cpu: int
    min_memory_gib: int
    # Cloud Run jobs, per second, without zonal redundancy: the GPU plus the CPU and memory the
    # trainer job is given (cloud_run_cpu, cloud_run_memory_gib), all of which are billed.
    usd_per_second: float
    # The CPU and memory of the trainer job for this GPU (Terraform sizes the job from the same table).
    cloud_run_cpu: int
    cloud_run_memory_gib: int
    # Time figures (runtune/gpus.json, each with its source): memory bandwidth (decoding during
    # evaluation), the trainer's start (interpreter, imports, CUDA context) and each step's fixed cost.
    memory_bandwidth_gbs: float = 300.0
    process_start_s: float = 40.0
    step_overhead_s: float = 0.1
    # The machine's fixed cost per evaluated example and per export beyond the FLOPs and bytes.
    eval_example_s: float = 0.0
    export_fixed_s: float = 0.0
    throughput_source: str = ""


@dataclass(frozen=True)
class Timing:
    """The duration terms besides training, from runtune/gpus.json `timing` (sources there)."""

    image_pull_s: float
    hub_bytes_per_s: float
    bucket_bytes_per_s: float
    upload_bytes_per_s: float
    device_load_bytes_per_s: float
    eval_generated_tokens: int
    published_range: tuple[float, float]
    calibrated_margin: float
    calibrated_min_runs: int


# The table lives in runtune/gpus.json, with its prices' source and date, because Terraform reads it
# too (infra/main.tf): one trainer job per GPU offered, shaped as priced here.
GPU_TABLE_FILE = "gpus.json"


def gpu_table_data() -> dict[str, Any]:
    """runtune/gpus.json as read (the Cloud Run GPUs, the timing, the CPU and the Vertex machines)."""
    return json.loads(resources.files("runtune").joinpath(GPU_TABLE_FILE).read_text(encoding="utf-8"))


def gpu_from_row(row: dict[str, Any], **fields: Any) -> Gpu:
    """A Gpu from a row of runtune/gpus.json: each of Gpu's fields the row holds under its own name,
    then `fields` (those the row names otherwise or derives), which win."""
    named = {field.name: row[field.name] for field in dataclasses.fields(Gpu) if field.name in row}
    return Gpu(**(named | fields))


def load_gpu_table(text: str | None = None) -> tuple[Gpu, ...]:
    """The GPU table from runtune/gpus.json (or from `text`, the same JSON)."""
    data = gpu_table_data() if text is None else json.loads(text)
    per_vcpu, per_gib = data["prices"]["usd_per_vcpu_second"], data["prices"]["usd_per_gib_second"]
    table = tuple(
        gpu_from_row(
            row,
            usd_per_second=row["gpu_usd_per_second"]
            + row["cloud_run_cpu"] * per_vcpu
            + row["cloud_run_memory_gib"] * per_gib,
        )
        for row in data["gpus"]
    )
    for gpu in table:
        if gpu.cloud_run_cpu < gpu.min_cpu or gpu.cloud_run_memory_gib < gpu.min_memory_gib:
            raise ValueError(f"{GPU_TABLE_FILE}: {gpu.name}'s job shape is below Cloud Run's minimum for it")
    if len({gpu.name for gpu in table}) != len(table):
        raise ValueError(f"{GPU_TABLE_FILE}: GPU names must be unique")
    return table


def load_timing(data: dict[str, Any] | None = None) -> Timing:
    row = (data or gpu_table_data())["timing"]
    low, high = row["published_range"]
    return Timing(
        image_pull_s=row["image_pull_s"],
        hub_bytes_per_s=row["hub_bytes_per_s"],
        bucket_bytes_per_s=row["bucket_bytes_per_s"],
        upload_bytes_per_s=row["upload_bytes_per_s"],
        device_load_bytes_per_s=row["device_load_bytes_per_s"],
        eval_generated_tokens=row["eval_generated_tokens"],
        published_range=(low, high),
        calibrated_margin=row["calibrated_margin"],
        calibrated_min_runs=row["calibrated_min_runs"],
    )


def load_cpu(data: dict[str, Any] | None = None) -> Gpu:
    """The local machine without a GPU, as a row of the same shape (measured figures, no price:
    the local platform's runs cost nothing)."""
    row = (data or gpu_table_data())["cpu"]
    return gpu_from_row(
        row,
        memory_gib=0,
        bf16_tflops=row["effective_tflops"],
        min_cpu=0,
        min_memory_gib=0,
        usd_per_second=0.0,
        cloud_run_cpu=0,
        cloud_run_memory_gib=0,
        throughput_source=row["source"],
    )


GPU_TABLE: tuple[Gpu, ...] = load_gpu_table()
GPU_NAMES: tuple[str, ...] = tuple(gpu.name for gpu in GPU_TABLE)
TIMING: Timing = load_timing()
CPU: Gpu = load_cpu()
CPU_NAME = CPU.name
# A run on the local CPU longer than this is warned about (the model wants a GPU).
CPU_WARNING_S = 3600
# What the CUDA context, allocator fragmentation and kernels' workspaces take beyond the model.
OVERHEAD_GIB = 1.5
HEADROOM = 0.9  # plan to use at most 90% of a GPU's memory

# Host memory (see `host_memory_gib`).
RUNTIME_HOST_GIB = 4.0  # Python, torch and CUDA's host side, transformers, the processor
# One encoded token held by the trainer: its `input_ids` and `labels` list entries, the int object
# and its token type id.
TOKEN_HOST_BYTES = 64
# An image's pixel values held in bfloat16 per token it becomes: Gemma 3's 896x896x3 image is 256
# tokens; Gemma 4's patches are smaller per token, so this is the conservative one of the two.
IMAGE_HOST_BYTES_PER_TOKEN = 896 * 896 * 3 * 2 // 256
# Hugging Face checkpoints come in shards of about 5 GB; loading materialises about one at a time.
CHECKPOINT_SHARD_BYTES = 5 * 10**9
# The merged export's largest shard (runtune.training.export streams one at a time): on the memory
# filesystem and, while safetensors serialises it, once more in host memory.
EXPORT_SHARD_BYTES = 2 * 10**9
# runtune.training.export.merge loads the bf16 base on the GPU only when it has this much room for it.
MERGE_GPU_FACTOR = 1.3


@dataclass(frozen=True)
class ModelFigures:
    """What the estimate needs of a model (the registry provides it)."""

    parameters: int
    hidden_size: int
    num_layers: int
    vocab_size: int
    # Tokens one image becomes for the language model (0 for text models).
    tokens_per_image: int = 0
    intermediate_size: int | None = None


@dataclass(frozen=True)
class RunShape:
    method: Method
    examples: int
    mean_tokens: float  # per example, images included
    epochs: int
    batch_size: int
    gradient_accumulation_steps: int
    max_length: int
    lora_rank: int = 16
    export_merged: bool = True
    # Evaluation after training (and before it, with a baseline: 2 passes) on this many examples.
    eval_examples: int = 0
    eval_passes: int = 1
    eval_generation: bool = False
    gradient_checkpointing: bool = True
    weights_from: WeightsFrom = "hub"
    # DPO: every example is two sequences (the chosen and the rejected chat) in the same micro-batch,
    # and a forward pass of the reference model (the adapter disabled, no gradients) over both.
    sequences_per_example: int = 1
    reference_pass: bool = False


@dataclass(frozen=True)
class RunTiming:
    """A finished run's measured phases (runtune/throughput.py keeps the newest per model, machine and
    method): what calibrates the estimate of the next one."""

    tokens: int
    steps: int
    eval_examples: int
    # From the process's start to the first training step (imports, load, data, baseline).
    setup_s: float
    train_s: float
    eval_s: float
    export_s: float
    # The part of the setup that encodes the training set (it grows with the tokens, images included).
    data_s: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.train_s, 1e-6)


Backend = Literal["cloud_run", "vertex"]


class Offer(BaseModel):
    """A run priced on one shape (runtune/compute.py `offers`): `shape` is the Cloud Run GPU's name or
    the Vertex machine type. `spot_usd` only on Vertex (Cloud Run jobs have no Spot capacity); `reason`
    says why it does not fit, `warning` what may still go wrong where it does (a Vertex machine's host
    memory; Cloud Run's is in the estimate's warnings). Beside `Estimate`, whose body lists them."""

    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True)

    backend: Backend
    shape: str
    label: str
    gpu: str
    gpu_count: int
    fits: bool
    seconds: int | None = None
    usd: float | None = None
    spot_usd: float | None = None
    reason: str | None = None
    warning: str | None = None

    def cost(self, spot: bool) -> float:
        assert self.usd is not None
        return self.spot_usd if spot and self.spot_usd is not None else self.usd


class Estimate(BaseModel):
    """What a run will take. A pydantic model (not a dataclass as its neighbours) because it is also
    the body of `POST /v1/fine_tuning/estimate` (`runtune.schemas.jobs.RunEstimate`), whose OpenAPI
    schema the web UI's types are generated from; every field is always in that body."""

    model_config = ConfigDict(frozen=True, json_schema_serialization_defaults_required=True)

    tokens: int
    steps: int
    memory_gib: float
    gpu: str | None
    gpu_label: str | None
    seconds: int | None
    usd: float | None
    reason: str | None = None
    # Peak host memory of the run on the chosen GPU's instance, and that instance's shape.
    host_memory_gib: float | None = None
    instance_cpu: int | None = None
    instance_memory_gib: int | None = None
    # What may go wrong although a GPU fits (host memory beyond the instance's, hours on a CPU).
    warnings: list[str] = Field(default_factory=list)
    # The range the run's duration and cost fall in, what it is based on, and where the time goes.
    seconds_low: int | None = None
    seconds_high: int | None = None
    usd_low: float | None = None
    usd_high: float | None = None
    basis: str | None = None
    calibrated_runs: int = 0
    # Where the estimate's time was reckoned: the GPU's name, or "cpu" (the local machine without one).
    machine: str | None = None
    machine_label: str | None = None
    breakdown: dict[str, int] = Field(default_factory=dict)
    # The run's seconds on the chosen GPU (what the monthly GPU budget counts), also where the time
    # above is reckoned on this machine's CPU.
    gpu_seconds: int | None = None
    # Where it trains (runtune/compute.py): Cloud Run's `gpu`, or the Vertex AI machine `machine` with
    # `gpu_count` of them (at Spot prices when `spot`); and every shape the deployment offers, priced.
    compute: str = "cloud_run"
    gpu_count: int = 1
    spot: bool = False
    offers: list[Offer] = Field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


def gpu_prices() -> dict[str, float]:
    overrides = json.loads(os.environ.get("RUNTUNE_GPU_PRICES", "{}") or "{}")
    return {gpu.name: float(overrides.get(gpu.name, gpu.usd_per_second)) for gpu in GPU_TABLE}


def memory_gib(model: ModelFigures, shape: RunShape) -> float:
    """Peak GPU memory of one training step.

    weights: 4-bit NF4 with double quantisation ~0.56 bytes/parameter for QLoRA, bf16 otherwise;
    trainable state: LoRA weights, their gradients and 8-bit Adam moments (~12 bytes each), or for
    full fine-tuning bf16 gradients + 8-bit Adam (~4 bytes/parameter on top of the weights);
    activations with gradient checkpointing: one layer's activations plus a checkpoint per layer;
    logits: float32 over the vocabulary for every token of the micro-batch (large for Gemma's 262k).
    """
    weights = model.parameters * (0.5625 if shape.method == "qlora" else 2.0)
    intermediate = model.intermediate_size or 4 * model.hidden_size
    lora_params = (
        shape.lora_rank * model.num_layers * (4 * 2 * model.hidden_size + 3 * (model.hidden_size + intermediate))
    )
    trainable = lora_params * 12 if shape.method != "full" else model.parameters * 4.0
    tokens = shape.batch_size * shape.sequences_per_example * shape.max_length
    activations = tokens * model.hidden_size * 2 * (model.num_layers + 16) + tokens * intermediate * 2 * 3
    logits = tokens * model.vocab_size * 4 * 2  # logits and their gradient
    return round((weights + trainable + activations + logits) / GIB + OVERHEAD_GIB, 2)


def host_memory_gib(model: ModelFigures, shape: RunShape, gpu: Gpu, *, weights_on_mount: bool = False) -> float:
    """Peak host memory of the run on `gpu`'s instance: the larger of training and export."""
    return max(host_memory_phases(model, shape, gpu, weights_on_mount=weights_on_mount))


def host_memory_phases(
    model: ModelFigures, shape: RunShape, gpu: Gpu, *, weights_on_mount: bool = False
) -> tuple[float, float]:
    """Host memory (GiB) while training and while exporting, on `gpu`'s instance.

    The base checkpoint (bf16, 2 bytes/parameter as published): downloaded from the Hub (or from the
    bucket) it sits on the memory filesystem for the whole run; read through the bucket's mount
    (`weights_on_mount`, weights staged under `models/`) it costs only reclaimable page cache.
    Training: the runtime, that copy, about one checkpoint shard while the model loads onto the GPU,
    and the encoded dataset (tokens and bfloat16 pixel values, one image per example of a vision
    model) held for the whole run. Export (the dataset released first): the runtime, that copy, the
    bf16 base when it does not fit the GPU for the merge (runtune.training.export.merge), and one
    export shard twice over (its file, and its bytes while it is serialised). Full fine-tuning
    exports the trained model from the GPU, and `export_merged=False` skips the merge."""
    checkpoint = model.parameters * 2
    staged = 0 if weights_on_mount else checkpoint
    # A preference pair holds two chats' tokens and one copy of its images (runtune/training/data.py).
    tokens = min(shape.mean_tokens, shape.max_length) * shape.sequences_per_example
    dataset = shape.examples * (tokens * TOKEN_HOST_BYTES + model.tokens_per_image * IMAGE_HOST_BYTES_PER_TOKEN)
    training = staged + min(checkpoint, CHECKPOINT_SHARD_BYTES) + dataset
    exporting = 0.0
    if shape.export_merged or shape.method == "full":
        merges_on_host = shape.method != "full" and MERGE_GPU_FACTOR * checkpoint > gpu.memory_gib * GIB
        exporting = staged + (checkpoint if merges_on_host else 0) + 2 * min(checkpoint, EXPORT_SHARD_BYTES)
    return round(training / GIB + RUNTIME_HOST_GIB, 2), round(exporting / GIB + RUNTIME_HOST_GIB, 2)


def _host_memory_warning(
    model: ModelFigures, shape: RunShape, chosen: Gpu, need: float, *, weights_on_mount: bool
) -> str | None:
    """What to say when the run's host memory exceeds the instance's, with the knobs that help."""
    training, exporting = host_memory_phases(model, shape, chosen, weights_on_mount=weights_on_mount)
    limit = chosen.cloud_run_memory_gib
    if max(training, exporting) <= limit:
        return None
    knobs = []
    if training > limit and model.tokens_per_image:
        knobs.append("train on fewer examples (their images are held in memory)")
    if not weights_on_mount:
        knobs.append(
            "stage the base model's weights in the data bucket under models/ (read through the mount, not "
            "downloaded into memory)"
        )
    if exporting > limit and shape.export_merged and shape.method != "full":
        knobs.append("set export.merged=false")
    roomier = [
        g.name
        for g in GPU_TABLE
        if g.cloud_run_memory_gib > limit
        and need <= g.memory_gib * HEADROOM
        and host_memory_gib(model, shape, g, weights_on_mount=weights_on_mount) <= g.cloud_run_memory_gib
    ]
    if roomier:
        knobs.append(f"use gpu '{roomier[0]}'")
    advice = (", ".join(knobs[:-1]) + " or " + knobs[-1]) if len(knobs) > 1 else "".join(knobs)
    return (
        f"needs about {max(training, exporting):.0f} GiB of host memory; the {chosen.label} instance has "
        f"{limit} GiB (its disk is memory too), so the trainer may run out of memory"
        + (f": {advice}" if advice else "")
    )


def estimate(
    model: ModelFigures,
    shape: RunShape,
    *,
    gpu: str = "auto",
    offered: Collection[str] | None = None,
    weights_on_mount: bool = False,
    where: Where = "cloud",
    calibration: Sequence[RunTiming] = (),
    model_name: str | None = None,
) -> Estimate:
    """The run's figures on `gpu`, or with "auto" on the smallest GPU it fits among those `offered`
    (a deployment's trainer jobs; None: every GPU of the table). Callers refuse a GPU that is not
    offered before asking (with the field to blame); here it is a ValueError.

    `where` the trainer runs: on the chosen GPU's Cloud Run job ("cloud": image pull, upload, price),
    or on this machine (the local platform, which costs nothing): with a GPU, reckoned as the chosen
    one; without ("local-cpu"), on the `CPU` row. `calibration`: finished runs of the same model,
    machine (`machine_name`) and method (runtune/throughput.py), newest first."""
    allowed = [g for g in GPU_TABLE if offered is None or g.name in offered]
    candidates = [g for g in allowed if gpu in ("auto", g.name)]
    if not candidates:
        raise ValueError(f"gpu {gpu!r} is not among the GPUs offered: {', '.join(g.name for g in allowed) or 'none'}")
    tokens_per_epoch = int(shape.examples * shape.sequences_per_example * min(shape.mean_tokens, shape.max_length))
    tokens = tokens_per_epoch * shape.epochs
    per_step = shape.batch_size * shape.gradient_accumulation_steps
    steps = math.ceil(shape.examples / per_step) * shape.epochs
    need = memory_gib(model, shape)
    fitting = [g for g in candidates if need <= g.memory_gib * HEADROOM]
    if not fitting:
        largest = max(candidates, key=lambda g: g.memory_gib)
        return Estimate(
            tokens=tokens,
            steps=steps,
            memory_gib=need,
            gpu=None,
            gpu_label=None,
            seconds=None,
            usd=None,
            reason=(
                f"needs about {need:.0f} GiB of GPU memory; the largest GPU allowed here ({largest.label}) has "
                f"{largest.memory_gib:.0f} GiB. Lower batch_size or max_length, use method 'qlora', or a smaller model"
            ),
        )
    chosen = min(fitting, key=lambda g: g.memory_gib)
    runs_on = CPU if where == "local-cpu" else chosen
    cloud = where == "cloud"
    phases = duration(model, shape, runs_on, tokens=tokens, steps=steps, cloud=cloud)
    pull = TIMING.image_pull_s if cloud else 0.0
    timed = time_range(phases, shape, tokens, list(calibration), image_pull_s=pull)
    price = gpu_prices()[chosen.name] if cloud else 0.0
    seconds = timed.seconds
    usd = round(seconds * price, 2)
    on_gpu = (
        seconds
        if runs_on is chosen
        else round(sum(duration(model, shape, chosen, tokens=tokens, steps=steps).values()))
    )
    warning = _host_memory_warning(model, shape, chosen, need, weights_on_mount=weights_on_mount)
    warnings = [warning] if warning else []
    if runs_on.name == CPU_NAME and timed.low >= CPU_WARNING_S:
        warnings.append(
            f"{model_name or 'This model'} would take about {timed.low / 3600:.0f}-{timed.high / 3600:.0f} hours "
            "on this machine's CPU (it has no GPU): train it with the gcp profile on a Cloud Run GPU, or on a "
            "machine with a GPU; the tiny-* models train here in minutes"
        )
    return Estimate(
        tokens=tokens,
        steps=steps,
        memory_gib=need,
        gpu=chosen.name,
        gpu_label=chosen.label,
        seconds=seconds,
        usd=usd,
        host_memory_gib=host_memory_gib(model, shape, chosen, weights_on_mount=weights_on_mount),
        instance_cpu=chosen.cloud_run_cpu,
        instance_memory_gib=chosen.cloud_run_memory_gib,
        warnings=warnings,
        seconds_low=timed.low,
        seconds_high=timed.high,
        usd_low=round(timed.low * price, 2),
        usd_high=round(timed.high * price, 2),
        basis=timed.basis,
        calibrated_runs=timed.runs,
        machine=runs_on.name,
        machine_label=runs_on.label,
        breakdown={name: round(value) for name, value in phases.items()},
        gpu_seconds=on_gpu,
    )


# -- duration -------------------------------------------------------------------------------------


def machine_name(gpu: str | None, where: Where) -> str:
    """The machine a run's time is measured on and calibrated for: "cpu" without a GPU, else the GPU."""
    return CPU_NAME if where == "local-cpu" or gpu is None else gpu


def local_where() -> Where:
    """The local platform's machine: with an NVIDIA driver present (a device node), its GPU."""
    return "local-gpu" if os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvidiactl") else "local-cpu"


def flops_per_token(model: ModelFigures, shape: RunShape) -> float:
    """Training FLOPs per token. A forward pass is ~2 FLOPs per parameter and token; the backward
    pass through the activations another 2 (LoRA/QLoRA: the frozen weights need no weight gradients),
    4 for full fine-tuning (weight gradients too); gradient checkpointing recomputes the forward
    pass once more in the backward. QLoRA pays ~30% on its matmuls to dequantise NF4. Attention adds
    ~4 x layers x hidden x sequence per token and pass (scores and the weighted sum)."""
    backward = 4.0 if shape.method == "full" else 2.0
    passes = 2.0 + backward + (2.0 if shape.gradient_checkpointing else 0.0) + (2.0 if shape.reference_pass else 0.0)
    dequantise = 1.3 if shape.method == "qlora" else 1.0
    sequence = min(shape.mean_tokens, shape.max_length)
    attention = 2.0 * model.num_layers * model.hidden_size * sequence * passes
    return passes * model.parameters * dequantise + attention


def duration(
    model: ModelFigures, shape: RunShape, gpu: Gpu, *, tokens: int, steps: int, cloud: bool = True
) -> dict[str, float]:
    """Seconds per phase of the run on `gpu` (a Cloud Run GPU, or the local CPU), from the table's
    figures (docs/architecture.md "Estimates" has the formula and its sources):

    startup: the image pull (Cloud Run only) and the trainer's start; load: the checkpoint's bytes
    downloaded (Hub) or read (bucket mount) and put on the device; train: tokens x FLOPs per token /
    (peak x utilisation) plus a fixed cost per optimizer step; evaluate: each evaluated example's
    forward pass and its generated tokens (decoding is bound by reading the weights once per token);
    export: the adapter, and for a merged export the bf16 base read again, merged, written and
    uploaded."""
    timing = TIMING
    flops = gpu.bf16_tflops * 1e12 * gpu.mfu
    checkpoint = model.parameters * 2  # bf16 as published
    source_rate = {"hub": timing.hub_bytes_per_s, "bucket": timing.bucket_bytes_per_s, "local": math.inf}
    load = checkpoint / source_rate[shape.weights_from] + checkpoint / timing.device_load_bytes_per_s
    train = tokens * flops_per_token(model, shape) / flops + steps * gpu.step_overhead_s
    sequence = min(shape.mean_tokens, shape.max_length)
    weight_bytes = model.parameters * (0.5625 if shape.method == "qlora" else 2.0)
    decode = max(2 * model.parameters / flops, weight_bytes / (gpu.memory_bandwidth_gbs * 1e9))
    generated = timing.eval_generated_tokens * (2 if shape.eval_generation else 1)
    per_example = sequence * 2 * model.parameters / flops + generated * decode + gpu.eval_example_s
    evaluate = shape.eval_examples * shape.eval_passes * per_example
    export = gpu.export_fixed_s
    if shape.export_merged or shape.method == "full":
        export += checkpoint / timing.device_load_bytes_per_s + checkpoint / (gpu.memory_bandwidth_gbs * 1e9)
        export += checkpoint / timing.upload_bytes_per_s if cloud else 0.0
    return {
        "startup": (timing.image_pull_s if cloud else 0.0) + gpu.process_start_s,
        "load": load,
        "train": train,
        "evaluate": evaluate,
        "export": export,
    }


@dataclass(frozen=True)
class TimeRange:
    seconds: int
    low: int
    high: int
    basis: str
    runs: int = 0


def time_range(
    phases: dict[str, float], shape: RunShape, tokens: int, runs: list[RunTiming], *, image_pull_s: float = 0.0
) -> TimeRange:
    """The run's duration, its range, and what it is based on: the platform's own finished runs of
    the same model, machine and method once there are `calibrated_min_runs` of them (each predicts
    this run from its measured setup, evaluation per example and export, and the training at their
    pooled tokens per second: a short run's few steps carry its warm-up, so the runs' tokens are
    weighed together), else the published figures with their stated spread."""
    timing = TIMING
    if len(runs) >= timing.calibrated_min_runs:
        tokens_per_s = sum(run.tokens for run in runs) / max(sum(run.train_s for run in runs), 1e-6)
        predictions = sorted(
            image_pull_s  # the measured setup starts with the trainer's process, after the pull
            + run.setup_s
            + run.data_s * (tokens / max(run.tokens, 1) - 1)  # the setup's encoding, at this run's tokens
            + tokens / tokens_per_s
            + run.eval_s * (shape.eval_examples / run.eval_examples if run.eval_examples else 0.0)
            + run.export_s
            for run in runs
        )
        margin = timing.calibrated_margin
        half = len(predictions) // 2
        middle = predictions[half] if len(predictions) % 2 else (predictions[half - 1] + predictions[half]) / 2
        return TimeRange(
            seconds=round(middle),
            low=round(predictions[0] * (1 - margin)),
            high=round(predictions[-1] * (1 + margin)),
            basis=f"calibrated from {len(runs)} finished runs",
            runs=len(runs),
        )
    total = sum(phases.values())
    low, high = timing.published_range
    return TimeRange(
        seconds=round(total), low=round(total * low), high=round(total * high), basis="from published throughput"
    )
