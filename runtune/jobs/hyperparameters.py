"""OpenAI's `auto` hyperparameters, resolved once, in the job's plan (runtune/jobs/plan.py), so the job
shows (and the trainer uses) the numbers it actually trains with, and says why each became so.

The rules (docs/architecture.md, "Auto hyperparameters"):
- batch size: the largest power of two up to `MAX_AUTO_BATCH` that leaves every epoch at least
  `MIN_STEPS_PER_EPOCH` optimizer steps and whose peak memory, at the set's longest sequence, fits
  the GPU the run gets (the one asked for, else the smallest offered GPU that fits the run at all);
- epochs: `TARGET_EPOCHS`, raised until the run makes `MIN_STEPS` optimizer steps (small sets need
  updates to learn) and lowered until it makes at most `MAX_STEPS` (large sets converge within a
  pass or two, and GPU time is paid by the step), always within [`MIN_EPOCHS`, `MAX_EPOCHS`];
- learning-rate multiplier: the model family's (runtune/models/registry.py `Family`).

OpenAI's own rule (its cookbook's data-preparation notebook) is the same shape in examples seen
(100 to 25,000, 3 epochs, within 1..25) with batch ~0.2% of the set; Runtune bounds optimizer steps
instead, because its batch grows with the set and the GPU, and steps are what a model learns from.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from runtune.estimate import GPU_TABLE, HEADROOM, Gpu, RunShape, WeightsFrom, memory_gib
from runtune.models.registry import ModelSpec
from runtune.schemas.jobs import Hyperparameters, RuntuneOptions

TARGET_EPOCHS = 3
MIN_EPOCHS, MAX_EPOCHS = 1, 25
MIN_STEPS, MAX_STEPS = 100, 3_000
MAX_AUTO_BATCH = 16
MIN_STEPS_PER_EPOCH = 32
# Text around the answer in a typical example (system, question, chat template markers): what an
# estimate assumes when the set's own lengths are unknown (an estimate from a number of examples).
TYPICAL_TEXT_TOKENS = 96
# Turn markers and the special tokens of the chat template, per example.
TEMPLATE_TOKENS = 32
# Characters per token, on the safe side: Gemma's tokenizer averages ~4 on English, fewer elsewhere.
CHARS_PER_TOKEN = 3.0


@dataclass(frozen=True)
class SequenceLengths:
    """An example's tokens, images included: the mean (time and cost) and the longest (memory;
    None when unknown, and then the job's `max_length` is what memory is sized for)."""

    mean_tokens: float
    longest_tokens: int | None = None
    # Preference pairs (a DPO set): each example trains as two sequences (the chosen and the rejected
    # chat, the lengths above being the longer's) plus the reference model's forward pass over both.
    pairs: bool = False

    @classmethod
    def typical(cls, model: ModelSpec) -> SequenceLengths:
        return cls(TYPICAL_TEXT_TOKENS + model.tokens_per_image)

    @classmethod
    def of_stats(cls, stats: dict[str, Any] | None, model: ModelSpec) -> SequenceLengths:
        """From a dataset's stats (runtune/datasets/stats.py); the typical lengths without them."""
        stats = stats or {}
        text = stats.get("example_chars")
        if not text:
            return cls.typical(model)
        rows = max(1, int(stats.get("rows") or text.get("count") or 1))
        images_mean = float(stats.get("images") or 0) / rows
        images_most = int(stats.get("max_images_per_example") or math.ceil(images_mean))
        mean = text["mean"] / CHARS_PER_TOKEN + TEMPLATE_TOKENS + images_mean * model.tokens_per_image
        longest = text["max"] / CHARS_PER_TOKEN + TEMPLATE_TOKENS + images_most * model.tokens_per_image
        return cls(round(mean, 1), math.ceil(longest), pairs=bool(stats.get("pairs")))


@dataclass(frozen=True)
class Resolved:
    """The job's hyperparameters, every one a number, and why each `auto` one became what it is."""

    hyperparameters: Hyperparameters
    auto: dict[str, str] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        assert isinstance(self.hyperparameters.n_epochs, int)
        return self.hyperparameters.n_epochs

    @property
    def batch_size(self) -> int:
        assert isinstance(self.hyperparameters.batch_size, int)
        return self.hyperparameters.batch_size


def run_shape(
    options: RuntuneOptions,
    lengths: SequenceLengths,
    examples: int,
    *,
    epochs: int,
    batch_size: int,
    held_out: int = 0,
    weights_from: WeightsFrom = "hub",
) -> RunShape:
    """What the estimate sizes: a batch pads to its longest example, never beyond `max_length`; the
    evaluation runs on `held_out` examples (runtune/jobs/plan.py `held_out_examples`), twice with a
    baseline."""
    evaluation = options.evaluation
    return RunShape(
        method=options.method,
        examples=examples,
        mean_tokens=lengths.mean_tokens,
        epochs=epochs,
        batch_size=batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps or 1,
        max_length=sequence_tokens(options, lengths),
        lora_rank=options.lora.rank,
        export_merged=options.export.merged,
        eval_examples=held_out,
        eval_passes=2 if evaluation.baseline else 1,
        eval_generation=evaluation.method != "label_scoring",
        gradient_checkpointing=options.gradient_checkpointing,
        weights_from=weights_from,
        sequences_per_example=2 if lengths.pairs else 1,
        reference_pass=lengths.pairs,
    )


def sequence_tokens(options: RuntuneOptions, lengths: SequenceLengths) -> int:
    """The longest sequence a batch pads to: the set's longest example, cut at `max_length`."""
    if lengths.longest_tokens is None:
        return options.max_length
    return min(options.max_length, lengths.longest_tokens)


def resolve(
    given: Hyperparameters,
    *,
    model: ModelSpec,
    examples: int,
    options: RuntuneOptions,
    lengths: SequenceLengths | None = None,
    offered: Sequence[str] | None = None,
) -> Resolved:
    """`given` with every `auto` replaced by the rules above, for a run on `examples` training examples."""
    lengths = lengths or SequenceLengths.typical(model)
    examples = max(1, examples)
    auto: dict[str, str] = {}
    batch = given.batch_size
    if batch == "auto":
        batch, auto["batch_size"] = _auto_batch(model, options, lengths, examples, offered)
    per_step = batch * (options.gradient_accumulation_steps or 1)
    steps_per_epoch = math.ceil(examples / per_step)
    epochs = given.n_epochs
    if epochs == "auto":
        epochs, auto["n_epochs"] = _auto_epochs(examples, steps_per_epoch)
    multiplier = given.learning_rate_multiplier
    if multiplier == "auto":
        multiplier = model.family.learning_rate_multiplier[model.modality]
        auto["learning_rate_multiplier"] = f"the {model.family.name} {model.modality} models' default"
    hyperparameters = Hyperparameters(n_epochs=epochs, batch_size=batch, learning_rate_multiplier=multiplier)
    return Resolved(hyperparameters, auto)


def _auto_epochs(examples: int, steps_per_epoch: int) -> tuple[int, str]:
    epochs = TARGET_EPOCHS
    if steps_per_epoch * epochs < MIN_STEPS:
        epochs = min(MAX_EPOCHS, math.ceil(MIN_STEPS / steps_per_epoch))
    elif steps_per_epoch * epochs > MAX_STEPS:
        epochs = max(MIN_EPOCHS, MAX_STEPS // steps_per_epoch)
    why = (
        f"{examples} examples make {steps_per_epoch} steps an epoch, so {epochs} epoch{'s' * (epochs != 1)} make "
        f"{steps_per_epoch * epochs} steps (auto aims at {MIN_STEPS}-{MAX_STEPS:,} steps in {MIN_EPOCHS}-{MAX_EPOCHS} "
        "epochs)"
    )
    return epochs, why


def _auto_batch(
    model: ModelSpec, options: RuntuneOptions, lengths: SequenceLengths, examples: int, offered: Sequence[str] | None
) -> tuple[int, str]:
    by_data = max(1, min(MAX_AUTO_BATCH, examples // MIN_STEPS_PER_EPOCH))
    by_data = 1 << (by_data.bit_length() - 1)  # the power of two at or below
    gpu = _gpu_for_batches(model, options, lengths, examples, offered)
    if gpu is None:
        return 1, "the run fits no GPU even one example at a time"
    batch = by_data
    while batch > 1 and not _fits(model, options, lengths, examples, batch, gpu.memory_gib):
        batch //= 2
    why = (
        f"{examples} examples allow batch {by_data} at {MIN_STEPS_PER_EPOCH}+ steps an epoch (at most "
        f"{MAX_AUTO_BATCH}); the {gpu.label} holds batch {batch} at {sequence_tokens(options, lengths)} tokens "
        "a sequence"
    )
    return batch, why


def _fits(
    model: ModelSpec, options: RuntuneOptions, lengths: SequenceLengths, examples: int, batch: int, gib: float
) -> bool:
    shape = run_shape(options, lengths, examples, epochs=1, batch_size=batch)
    return memory_gib(model.figures(), shape) <= gib * HEADROOM


def _gpu_for_batches(
    model: ModelSpec, options: RuntuneOptions, lengths: SequenceLengths, examples: int, offered: Sequence[str] | None
) -> Gpu | None:
    """The GPU the batch is sized for: the one asked for, else the smallest offered that fits one
    example at a time (so `auto` never moves a run to a larger, dearer GPU)."""
    candidates = [
        gpu for gpu in GPU_TABLE if (offered is None or gpu.name in offered) and options.gpu in ("auto", gpu.name)
    ]
    fitting = [gpu for gpu in candidates if _fits(model, options, lengths, examples, 1, gpu.memory_gib)]
    return min(fitting, key=lambda gpu: gpu.memory_gib) if fitting else None
