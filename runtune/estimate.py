"""Before a GPU starts: how many tokens and steps a run takes, how much GPU memory it needs, which
Cloud Run GPU fits, and what it will cost and how long it will take.

The figures are deliberately simple and conservative (documented below), and the price table
carries its source and date and can be overridden with `RUNTUNE_GPU_PRICES` (JSON).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from typing import Any, Literal

Method = Literal["qlora", "lora", "full"]
GIB = 1024**3


@dataclass(frozen=True)
class Gpu:
    name: str  # Cloud Run's accelerator name
    label: str
    memory_gib: float
    # Dense bf16 throughput and the share of it a fine-tuning step reaches (MFU).
    bf16_tflops: float
    mfu: float
    min_cpu: int
    min_memory_gib: int
    # Cloud Run jobs, per second, without zonal redundancy: GPU + its minimum CPU and memory.
    usd_per_second: float


# Source: cloud.google.com/run/pricing and /run/docs/configuring/jobs/gpu, read 2026-11-22
# (us-central1, Tier 1, instance-based billing, no zonal redundancy). The CPU and memory of the
# minimum configuration are included. The RTX PRO 6000 price is a provisional figure: override
# it with RUNTUNE_GPU_PRICES='{"nvidia-rtx-pro-6000": <usd per second>}' once your bill shows it.
GPU_TABLE: tuple[Gpu, ...] = (
    Gpu("nvidia-l4", "NVIDIA L4 (24 GB)", 24, 121, 0.35, 4, 16, 0.0001867 + 4 * 0.000018 + 16 * 0.000002),
    Gpu(
        "nvidia-rtx-pro-6000",
        "NVIDIA RTX PRO 6000 Blackwell (96 GB)",
        96,
        500,
        0.30,
        20,
        80,
        0.00075 + 20 * 0.000018 + 80 * 0.000002,
    ),
)
# What the CUDA context, allocator fragmentation and kernels' workspaces take beyond the model.
OVERHEAD_GIB = 1.5
HEADROOM = 0.9  # plan to use at most 90% of a GPU's memory


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


@dataclass(frozen=True)
class Estimate:
    tokens: int
    steps: int
    memory_gib: float
    gpu: str | None
    gpu_label: str | None
    seconds: int | None
    usd: float | None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


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
    tokens = shape.batch_size * shape.max_length
    activations = tokens * model.hidden_size * 2 * (model.num_layers + 16) + tokens * intermediate * 2 * 3
    logits = tokens * model.vocab_size * 4 * 2  # logits and their gradient
    return round((weights + trainable + activations + logits) / GIB + OVERHEAD_GIB, 2)


def estimate(model: ModelFigures, shape: RunShape, *, gpu: str = "auto") -> Estimate:
    tokens_per_epoch = int(shape.examples * min(shape.mean_tokens, shape.max_length))
    tokens = tokens_per_epoch * shape.epochs
    per_step = shape.batch_size * shape.gradient_accumulation_steps
    steps = math.ceil(shape.examples / per_step) * shape.epochs
    need = memory_gib(model, shape)
    candidates = [g for g in GPU_TABLE if gpu in ("auto", g.name)]
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
                f"needs about {need:.0f} GiB of GPU memory; the largest GPU allowed ({largest.label}) has "
                f"{largest.memory_gib:.0f} GiB. Lower batch_size or max_length, use method 'qlora', or a smaller model"
            ),
        )
    chosen = min(fitting, key=lambda g: g.memory_gib)
    # Frozen weights need no weight gradients: a LoRA step costs ~4 FLOPs per parameter and token
    # (forward 2, backward through activations 2); full fine-tuning ~6; QLoRA pays ~30% to dequantise.
    flops_per_token = {"qlora": 4 * 1.3, "lora": 4.0, "full": 6.0}[shape.method] * model.parameters
    seconds = int(tokens * flops_per_token / (chosen.bf16_tflops * 1e12 * chosen.mfu)) + 180  # + start and load
    usd = round(seconds * gpu_prices()[chosen.name], 2)
    return Estimate(tokens, steps, need, chosen.name, chosen.label, seconds, usd)
