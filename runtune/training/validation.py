"""Validation during training, as OpenAI reports it: the loss and token accuracy of held-out answers
(`valid_loss`, `valid_token_accuracy` in the metrics events, `valid_loss` and
`valid_mean_token_accuracy` on model checkpoints), teacher-forced exactly as the training loss is.

Bounded cost: at most `MAX_EXAMPLES` examples (the first of the validation data, the same every time,
so points compare), measured `POINTS_PER_RUN` times in a run plus at each model checkpoint. The
validation data is the job's validation file, else the training dataset's `validation` split; the
final evaluation's split (`evaluation.split`, by default `test`) is not used, so the test set stays
unseen until the end.

A `dpo` job validates its held-out pairs the same way: `valid_loss` is their DPO loss and
`valid_reward_accuracy` the share the implicit reward orders right (`measure_pairs`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import islice
from typing import Any

import torch

from runtune.ports.blobs import BlobStore
from runtune.schemas.jobs import TrainConfig
from runtune.training import data
from runtune.training.chat import IGNORE_INDEX, ChatFormat, Encoded
from runtune.training.distributed import SINGLE, World
from runtune.training.loop import answer_scores
from runtune.training.preference import Dpo, evaluate_pairs

MAX_EXAMPLES = 64
POINTS_PER_RUN = 10
BATCH = 8


@dataclass
class Validation:
    examples: list[Any]  # `Encoded`, or `EncodedPair` for a dpo job
    every_steps: int

    def due(self, step: int) -> bool:
        return bool(self.examples) and step % self.every_steps == 0


def prepare(blobs: BlobStore, fmt: ChatFormat, config: TrainConfig, total_steps: int) -> Validation:
    from runtune.datasets.canonical import read_split

    if config.validation_dataset_id:
        sources = [(config.validation_dataset_id, split) for split in ("train", "validation", "test")]
    else:
        sources = [(config.dataset_id, "validation")]
    examples: list[Encoded] = []
    for dataset_id, split in sources:
        rows = read_split(blobs, config.owner, dataset_id, split)
        pairs = config.objective == "dpo"
        examples = data.encode_all(fmt, islice(rows, MAX_EXAMPLES), config.max_length, pairs=pairs).examples
        if examples:
            break
    return Validation(examples, every_steps=max(1, math.ceil(total_steps / POINTS_PER_RUN)))


@torch.no_grad()
def measure(
    model: Any, examples: list[Encoded], *, pad_id: int, pad_to_multiple_of: int, world: World = SINGLE
) -> dict[str, float]:
    """`valid_loss` (mean over the answer tokens) and `valid_token_accuracy` of `examples`. Under data
    parallelism each rank scores every `size`-th example and the sums are all-reduced: every rank
    gets the one process's figures (up to float rounding)."""
    examples = examples[world.rank :: world.size]
    was_training = model.training
    model.eval()  # no dropout: the same weights score the same, and no RNG is drawn (resume stays exact)
    device = next(model.parameters()).device
    loss_sum, correct, tokens = 0.0, 0, 0
    try:
        for start in range(0, len(examples), BATCH):
            batch = {
                k: v.to(device)
                for k, v in data.collate(examples[start : start + BATCH], pad_id, pad_to_multiple_of).items()
            }
            tokens += int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
            loss, hits = answer_scores(model, batch)
            loss_sum += float(loss)
            correct += hits
    finally:
        model.train(was_training)
    loss_sum, correct, tokens = world.sum([loss_sum, correct, tokens])
    return {"valid_loss": loss_sum / max(tokens, 1), "valid_token_accuracy": correct / max(tokens, 1)}


def measure_pairs(
    model: Any, pairs: list[data.EncodedPair], objective: Dpo, *, world: World = SINGLE
) -> dict[str, float]:
    """`valid_loss` (the DPO loss) and `valid_reward_accuracy` of held-out pairs, shared among the
    ranks as `measure` shares its examples."""
    mine = pairs[world.rank :: world.size]
    result = evaluate_pairs(model, mine, objective)
    loss_sum, right, count = world.sum([result["loss"] * len(mine), result["reward_accuracy"] * len(mine), len(mine)])
    return {"valid_loss": loss_sum / max(count, 1), "valid_reward_accuracy": right / max(count, 1)}
