"""What the readers produce: one raw example per input row, images not yet decoded."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from runtune.datasets.problems import DataError, Location

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "eval": "validation",
    "test": "test",
    "testing": "test",
}


@dataclass(frozen=True)
class RawImage:
    data: bytes
    path: str | None
    where: Location


@dataclass(frozen=True)
class RawExample:
    """Messages in the canonical layout; the n-th `{"type": "image"}` part is `images[n]`."""

    messages: list[dict[str, Any]]
    where: Location
    images: list[RawImage] = field(default_factory=list)
    label: str | None = None
    split: str | None = None
    # A preference pair's non-preferred answer (one assistant message); `messages` ends with the preferred one.
    rejected: list[dict[str, Any]] | None = None


# Readers yield a DataError in place of a bad row, so the pipeline decides: fail the dataset, or
# (when the user asked) skip and count the row. File-level problems are raised.
RowOrProblem = RawExample | DataError
Rows = Iterator[RowOrProblem]


def canonical_split(value: Any, where: Location) -> str:
    split = SPLIT_ALIASES.get(str(value).strip().lower())
    if split is None:
        raise DataError(f"unknown split '{value}' (use train, validation or test)", where, code="invalid_split")
    return split


def text_part(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


IMAGE_PART: dict[str, Any] = {"type": "image"}
