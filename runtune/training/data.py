"""Data: encode each example once (chat template, loss mask, images processed once), group batches
by length, pad to a multiple of 8 (never to a global maximum), in an order that a resumed run
reproduces exactly from (seed, epoch, batch index).

Processed images are kept in bfloat16 (half of float32; the models' vision towers compute in
bfloat16 on the GPU anyway, and the rounding is below the 8-bit source images' own step), and
returned as float32 by the collator, which the model casts to its own dtype."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any

from runtune.datasets.canonical import Example
from runtune.training.chat import IGNORE_INDEX, ChatFormat, Encoded, FormatError

# Batches are formed inside windows of this many batches: sorted by length within a window (little
# padding), windows shuffled (no curriculum by length).
GROUP_WINDOW_BATCHES = 50


@dataclass
class EncodedPair:
    """A preference pair ready for the collator: the prompt with the preferred answer, and with the
    other. Its length is the longer's (what a batch pads to and `max_length` bounds)."""

    chosen: Encoded
    rejected: Encoded

    def __len__(self) -> int:
        return max(len(self.chosen), len(self.rejected))


@dataclass
class EncodedSplit:
    examples: list[Any]  # `Encoded`, or `EncodedPair` for a preference set
    skipped_too_long: int = 0
    skipped_invalid: int = 0


def encode_pair(fmt: ChatFormat, example: Example) -> EncodedPair:
    """Both chats of a pair, each masked as a training example is (loss on its answer alone)."""
    if example.rejected is None:
        raise FormatError("the example is not a preference pair")
    other = replace(example, messages=example.rejected_messages(), rejected=None)
    return EncodedPair(fmt.encode_for_training(example), fmt.encode_for_training(other))


def compact_pair(pair: EncodedPair) -> EncodedPair:
    """`compact` of both chats, the rejected one then holding the chosen's image tensors rather than
    a copy (the same images of the same prompt: an 896 px image is megabytes, and the encoded set
    stays in memory for the whole run)."""
    chosen, rejected = compact(pair.chosen), compact(pair.rejected)
    for key, value in chosen.extras.items():
        if not key.endswith("token_type_ids") and key in rejected.extras:
            rejected.extras[key] = value
    return EncodedPair(chosen, rejected)


def encode_all(fmt: ChatFormat, examples: Iterable[Example], max_length: int, *, pairs: bool = False) -> EncodedSplit:
    """Every example encoded (as a pair with `pairs`), what cannot be trained on counted and left out."""
    split = EncodedSplit(examples=[])
    for example in examples:
        try:
            encoded: Encoded | EncodedPair = encode_pair(fmt, example) if pairs else fmt.encode_for_training(example)
        except FormatError:
            split.skipped_invalid += 1
            continue
        # Truncating would cut the answer (or an image's tokens): too-long examples are skipped and counted.
        if len(encoded) > max_length:
            split.skipped_too_long += 1
            continue
        split.examples.append(compact_pair(encoded) if isinstance(encoded, EncodedPair) else compact(encoded))
    return split


def compact(encoded: Encoded) -> Encoded:
    """The example with its floating image tensors stored in bfloat16."""
    import torch

    for key, value in encoded.extras.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point():
            encoded.extras[key] = value.to(torch.bfloat16)
    return encoded


def _shuffled_batches(
    lengths: list[int], window: int, seed: int, epoch: int, cut: Callable[[list[int]], Iterable[list[int]]]
) -> list[list[int]]:
    """One epoch's batches: the examples shuffled, sorted by length within windows of `window` (so a
    batch pads little), each window `cut` into batches, the batches shuffled; a pure function of its
    arguments."""
    rng = random.Random(f"{seed}-{epoch}")
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        batches.extend(cut(sorted(order[start : start + window], key=lambda index: lengths[index])))
    rng.shuffle(batches)
    return batches


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The batches of one epoch, as lists of example indices; a pure function of its arguments."""

    def cut(chunk: list[int]) -> Iterable[list[int]]:
        return (chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))

    return _shuffled_batches(lengths, batch_size * GROUP_WINDOW_BATCHES, seed, epoch, cut)


# Batches by token budget (`TrainConfig.batch_tokens`) hold at most this many times `batch_size`.
TOKEN_BATCH_FACTOR = 4


def token_batches(
    lengths: list[int], budget: int, max_batch: int, seed: int, epoch: int, multiple: int = 8
) -> list[list[int]]:
    """The batches of one epoch by token budget: examples shuffled, sorted by length within windows
    (as `epoch_batches`), then as many consecutive ones a batch as fit `budget` padded tokens (the
    batch's longest, rounded up to `multiple`, times its rows) and `max_batch` rows; an example over
    the budget alone is a batch of one. Every example once; a pure function of its arguments."""

    def cut(chunk: list[int]) -> Iterable[list[int]]:
        current: list[int] = []
        for index in chunk:
            width = math.ceil(lengths[index] / multiple) * multiple  # sorted: the longest so far
            if current and (width * (len(current) + 1) > budget or len(current) >= max_batch):
                yield current
                current = []
            current.append(index)
        if current:
            yield current

    return _shuffled_batches(lengths, max_batch * GROUP_WINDOW_BATCHES, seed, epoch, cut)


def steps_per_epoch(examples: int, batch_size: int, accumulation: int) -> int:
    return math.ceil(math.ceil(examples / batch_size) / accumulation)


def collate_pairs(pairs: list[EncodedPair], pad_id: int, multiple: int = 8) -> dict[str, Any]:
    """One batch of both chats of every pair: the chosen rows first, then the rejected in the same
    order (row i and row i + len(pairs) are one pair)."""
    return collate([pair.chosen for pair in pairs] + [pair.rejected for pair in pairs], pad_id, multiple)


def collate(items: list[Encoded], pad_id: int, multiple: int = 8) -> dict[str, Any]:
    import torch

    longest = max(len(item) for item in items)
    width = math.ceil(longest / multiple) * multiple
    batch: dict[str, Any] = {
        "input_ids": torch.full((len(items), width), pad_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(items), width), dtype=torch.long),
        "labels": torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long),
    }
    for row, item in enumerate(items):
        size = len(item)
        batch["input_ids"][row, :size] = torch.tensor(item.input_ids)
        batch["attention_mask"][row, :size] = 1
        batch["labels"][row, :size] = torch.tensor(item.labels)
    # A mixed batch (examples with and without images) has per-image tensors for some rows only.
    keys = list(dict.fromkeys(key for item in items for key in item.extras))
    for key in keys:
        if key.endswith("token_type_ids"):  # per token: padded like the ids (0 = text)
            present = next(item.extras[key] for item in items if key in item.extras)
            padded = torch.zeros((len(items), width), dtype=present.dtype)
            for row, item in enumerate(items):
                if key in item.extras:
                    padded[row, : item.extras[key].shape[-1]] = item.extras[key]
            batch[key] = padded
        else:  # per image: stacked along the image axis
            stacked = torch.cat([item.extras[key] for item in items if key in item.extras], dim=0)
            batch[key] = stacked.float() if stacked.is_floating_point() else stacked
    return batch
