"""Statistics and warnings gathered while a dataset streams through, in bounded memory.

Counts are exact; distributions (text lengths, image sizes) come from a seeded reservoir sample
of at most `RESERVOIR` values each, so their percentiles cost the same for 100 or 10 million rows.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Any

from runtune.datasets.canonical import Example
from runtune.datasets.images import NormalizedImage
from runtune.datasets.problems import DataError

RESERVOIR = 4096
MIN_EXAMPLES_PER_CLASS = 5
IMBALANCE_RATIO = 10.0
MAX_REPORTED_PROBLEMS = 20


class Reservoir:
    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)
        self._values: list[float] = []
        self.count = 0
        self.total = 0.0
        self.min: float | None = None
        self.max: float | None = None

    def add(self, value: float) -> None:
        self.count += 1
        self.total += value
        self.min = value if self.min is None else min(self.min, value)
        self.max = value if self.max is None else max(self.max, value)
        if len(self._values) < RESERVOIR:
            self._values.append(value)
        else:
            slot = self._rng.randrange(self.count)
            if slot < RESERVOIR:
                self._values[slot] = value

    def summary(self) -> dict[str, float] | None:
        if not self.count:
            return None
        ordered = sorted(self._values)

        def pct(p: float) -> float:
            return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

        return {
            "count": self.count,
            "min": self.min or 0,
            "p10": pct(0.1),
            "p50": pct(0.5),
            "p90": pct(0.9),
            "max": self.max or 0,
            "mean": round(self.total / self.count, 2),
        }


def _text(example: Example, role: str | None) -> str:
    """The text of `role`'s messages (of every message with None)."""
    return " ".join(
        part["text"] or ""
        for m in example.messages
        if role is None or m["role"] == role
        for part in m["content"]
        if part["type"] == "text"
    )


class StatsCollector:
    def __init__(self, seed: int = 0) -> None:
        self.rows: Counter[str] = Counter()
        self.labels: dict[str, Counter[str]] = defaultdict(Counter)
        self.prompt_chars = Reservoir(seed)
        self.answer_chars = Reservoir(seed + 1)
        self.answer_words = Reservoir(seed + 2)
        self.widths = Reservoir(seed + 3)
        self.heights = Reservoir(seed + 4)
        # Every message's text of an example: with the images, what sizes a training batch
        # (runtune/jobs/hyperparameters.py reads its mean and max as token lengths).
        self.example_chars = Reservoir(seed + 5)
        # Preference pairs: their answers' lengths, and how often the preferred one is the longer
        # (a set where it nearly always is may teach length rather than quality).
        self.pairs = 0
        self.chosen_longer = 0
        self.chosen_chars = Reservoir(seed + 6)
        self.rejected_chars = Reservoir(seed + 7)
        self.max_images = 0
        self.images = 0
        self.resized = 0
        self.duplicates = 0
        self.near_empty = 0
        self.skipped = 0
        self.problems: list[str] = []
        self.ignored_files = 0

    def add(self, split: str, example: Example, images: list[NormalizedImage], resized: int) -> None:
        self.rows[split] += 1
        if example.label is not None:
            self.labels[split][example.label] += 1
        prompt, answer = _text(example, "user"), _text(example, "assistant").strip()
        self.prompt_chars.add(len(prompt))
        self.answer_chars.add(len(answer))
        self.answer_words.add(len(answer.split()))
        example_chars = len(_text(example, None))
        if example.rejected is not None:
            rejected = _text(Example(example.rejected), "assistant").strip()
            self.pairs += 1
            self.chosen_longer += len(answer) > len(rejected)
            self.chosen_chars.add(len(answer))
            self.rejected_chars.add(len(rejected))
            # A pair trains on both chats: the longer one is what a batch is sized for.
            example_chars += max(0, len(rejected) - len(answer))
        self.example_chars.add(example_chars)
        self.max_images = max(self.max_images, len(images))
        if not answer or (not images and len(prompt.strip()) < 3):
            self.near_empty += 1
        for image in images:
            self.images += 1
            self.widths.add(image.width)
            self.heights.add(image.height)
        self.resized += resized

    def skip(self, problem: DataError) -> None:
        self.skipped += 1
        if len(self.problems) < MAX_REPORTED_PROBLEMS:
            self.problems.append(problem.message)

    @property
    def total(self) -> int:
        return sum(self.rows.values())

    def label_counts(self) -> dict[str, int]:
        merged: Counter[str] = Counter()
        for counts in self.labels.values():
            merged.update(counts)
        return dict(sorted(merged.items()))

    def summary(self) -> dict[str, Any]:
        return {
            "rows": self.total,
            "splits": dict(self.rows),
            "label_counts": {split: dict(sorted(c.items())) for split, c in self.labels.items()},
            "prompt_chars": self.prompt_chars.summary(),
            "answer_chars": self.answer_chars.summary(),
            "answer_words": self.answer_words.summary(),
            "example_chars": self.example_chars.summary(),
            **self._pair_summary(),
            "max_images_per_example": self.max_images,
            "images": self.images,
            "images_resized": self.resized,
            "image_width": self.widths.summary(),
            "image_height": self.heights.summary(),
            "duplicates_removed": self.duplicates,
            "near_empty_rows": self.near_empty,
            "skipped_rows": self.skipped,
            "skipped_examples": self.problems,
            "ignored_files": self.ignored_files,
        }

    def _pair_summary(self) -> dict[str, Any]:
        if not self.pairs:
            return {}
        return {
            "pairs": self.pairs,
            "chosen_chars": self.chosen_chars.summary(),
            "rejected_chars": self.rejected_chars.summary(),
            "chosen_longer_share": round(self.chosen_longer / self.pairs, 4),
        }

    def warnings(self, classification: bool) -> list[str]:
        notes: list[str] = []
        if self.pairs >= 20 and self.chosen_longer / self.pairs >= 0.9:
            notes.append(
                f"the preferred answer is the longer one in {self.chosen_longer} of {self.pairs} pairs: "
                "preference tuning may learn to answer at length rather than better"
            )
        if self.duplicates:
            notes.append(f"{self.duplicates} duplicate rows (same images, text and label) were removed")
        if self.near_empty:
            notes.append(f"{self.near_empty} rows are near-empty (an empty answer, or no image and almost no text)")
        if self.skipped:
            notes.append(f"{self.skipped} bad rows were skipped, as asked (first: {self.problems[0]})")
        if self.ignored_files:
            notes.append(f"{self.ignored_files} files that are not images were ignored")
        for split in ("validation", "test"):
            if not self.rows.get(split):
                notes.append(f"no {split} examples: evaluation will have nothing to measure on that split")
        if classification:
            train = self.labels.get("train", Counter())
            rare = sorted(
                label for label, count in self.label_counts().items() if train[label] < MIN_EXAMPLES_PER_CLASS
            )
            if rare:
                shown = ", ".join(rare[:10]) + (f" and {len(rare) - 10} more" if len(rare) > 10 else "")
                notes.append(f"too few training examples (< {MIN_EXAMPLES_PER_CLASS}) for: {shown}")
            counts = self.label_counts()
            if counts and max(counts.values()) > IMBALANCE_RATIO * min(counts.values()):
                most, least = max(counts, key=counts.__getitem__), min(counts, key=counts.__getitem__)
                notes.append(f"labels are imbalanced: '{most}' has {counts[most]} examples, '{least}' {counts[least]}")
        return notes
