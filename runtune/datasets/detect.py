"""What kind of input an upload is, and a column mapping when the user gave none."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

from runtune.datasets.archives import ARCHIVE_SUFFIXES, is_archive_name
from runtune.datasets.chat_jsonl import numbered_lines
from runtune.datasets.preference import is_preference_record
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
_CHOSEN_NAMES = ("chosen", "preferred", "preferred_output")
_REJECTED_NAMES = ("rejected", "non_preferred", "non_preferred_output")


class InputKind(StrEnum):
    chat_jsonl = "chat_jsonl"
    preference_jsonl = "preference_jsonl"
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


def input_kind(path: Path, display: str, mapping: ColumnMapping | None, max_line_bytes: int) -> InputKind:
    """What the file at `path` is, by its name (`display`) and, for JSONL, its first record: the one
    detection, for an uploaded file and for the table inside an uploaded archive alike.

    A `.jsonl`/`.ndjson` whose first record has a `messages` list is an OpenAI chat JSONL, one whose
    first record has `input` and `preferred_output` an OpenAI preference JSONL, unless a column mapping
    was given (then it is a table of the mapped columns).
    """
    name = display.lower()
    if is_archive_name(name):
        return InputKind.image_folder  # refined once unpacked
    if name.endswith((".jsonl", ".ndjson")) and mapping is None:
        kind = _first_record_kind(path, max_line_bytes)
        if kind is not None:
            return kind
    if name.endswith(TABLE_SUFFIXES):
        return InputKind.table
    raise DataError(
        f"unsupported file type; supported: {', '.join(SUPPORTED_SUFFIXES)}", Location(display), code="unsupported_type"
    )


def _first_record_kind(path: Path, max_line_bytes: int) -> InputKind | None:
    """Chat or preference JSONL by the first record; None for a table of records."""
    for _, text in numbered_lines(path, path.name, max_line_bytes):
        if isinstance(text, DataError):
            return InputKind.chat_jsonl  # let the chat reader report the line (too long, not UTF-8)
        try:
            first = json.loads(text)
        except (json.JSONDecodeError, RecursionError):
            return InputKind.chat_jsonl  # let the chat reader report the malformed line
        if is_preference_record(first):
            return InputKind.preference_jsonl
        return InputKind.chat_jsonl if isinstance(first, dict) and isinstance(first.get("messages"), list) else None
    return InputKind.chat_jsonl


def guess_mapping(columns: list[str], display: str, label_columns: set[str]) -> ColumnMapping:
    """The usual column names (`image`, `label`, `caption`...) when no mapping was given."""
    lowered = {column.lower(): column for column in columns}

    def pick(names: tuple[str, ...]) -> str | None:
        return next((lowered[name] for name in names if name in lowered), None)

    chosen, rejected = pick(_CHOSEN_NAMES), pick(_REJECTED_NAMES)
    if chosen and rejected:  # a preference table (TRL's and most Hub sets' names)
        question = pick(_QUESTION_NAMES)
        return ColumnMapping(
            image=pick(_IMAGE_NAMES),
            user="{" + question + "}" if question else None,
            chosen=chosen,
            rejected=rejected,
            split=pick(_SPLIT_NAMES),
        )

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
