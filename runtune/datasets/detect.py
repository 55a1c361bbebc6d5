"""What kind of input an upload is, and a column mapping when the user gave none."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

from runtune.datasets.archives import ARCHIVE_SUFFIXES, is_archive_name
from runtune.datasets.chat_jsonl import numbered_lines
from runtune.datasets.limits import dataset_limits
from runtune.datasets.problems import DataError, Location
from runtune.datasets.tables import TABLE_SUFFIXES
from runtune.schemas.datasets import ColumnMapping

SUPPORTED_SUFFIXES = (*TABLE_SUFFIXES, *ARCHIVE_SUFFIXES)
# Column names that mean the same thing in most public sets (Hugging Face's included).
_IMAGE_NAMES = ("image", "img", "image_path", "image_file", "file_name", "filename", "path", "picture", "photo")
_LABEL_NAMES = ("label", "labels", "class", "category", "fine_label", "breed")
_ANSWER_NAMES = ("answer", "caption", "text", "output", "response", "completion", "target")
_QUESTION_NAMES = ("question", "prompt", "query", "instruction", "input")
_SPLIT_NAMES = ("split",)


class InputKind(StrEnum):
    chat_jsonl = "chat_jsonl"
    table = "table"
    image_folder = "image_folder"
    hub = "hub"


def check_supported(filename: str) -> None:
    """Refuse an unsupported file type before a byte is uploaded (415 at the API)."""
    if not filename.lower().endswith(SUPPORTED_SUFFIXES):
        from runtune.errors import UnsupportedMediaType

        raise UnsupportedMediaType(
            f"'{filename}': unsupported file type; upload {', '.join(SUPPORTED_SUFFIXES)}", param="filename"
        )


def is_chat_jsonl(path: Path, max_line_bytes: int | None = None) -> bool:
    """A JSONL whose first record has a `messages` list is the OpenAI chat format."""
    limit = max_line_bytes or dataset_limits().max_line_bytes
    for _, text in numbered_lines(path, path.name, limit):
        if isinstance(text, DataError):
            return True  # let the chat reader report the line (too long, not UTF-8)
        try:
            first = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return True  # let the chat reader report the malformed line
        return isinstance(first, dict) and isinstance(first.get("messages"), list)
    return True


def single_file_kind(path: Path, display: str, mapping: ColumnMapping | None) -> InputKind:
    name = display.lower()
    if is_archive_name(name):
        return InputKind.image_folder  # refined once unpacked
    if name.endswith((".jsonl", ".ndjson")) and mapping is None and is_chat_jsonl(path):
        return InputKind.chat_jsonl
    if name.endswith(TABLE_SUFFIXES):
        return InputKind.table
    raise DataError(
        f"unsupported file type; supported: {', '.join(SUPPORTED_SUFFIXES)}", Location(display), code="unsupported_type"
    )


def guess_mapping(columns: list[str], display: str, label_columns: set[str]) -> ColumnMapping:
    """The usual column names (`image`, `label`, `caption`...) when no mapping was given."""
    lowered = {column.lower(): column for column in columns}

    def pick(names: tuple[str, ...]) -> str | None:
        return next((lowered[name] for name in names if name in lowered), None)

    label = next(iter(sorted(label_columns)), None) or pick(_LABEL_NAMES)
    answer = None if label else pick(_ANSWER_NAMES)
    if label is None and answer is None:
        raise DataError(
            "no column mapping given and no label or answer column recognised; give a mapping "
            f"(image, user, answer or label). The columns are: {', '.join(columns)}",
            Location(display),
            code="mapping_required",
        )
    # A labelled text set (sentiment, topics) classifies its `text` column.
    question = pick(_QUESTION_NAMES) or (pick(("text", "sentence", "content")) if label else None)
    return ColumnMapping(
        image=pick(_IMAGE_NAMES),
        label=label,
        answer=answer,
        user="{" + question + "}" if question else None,
        split=pick(_SPLIT_NAMES),
    )
