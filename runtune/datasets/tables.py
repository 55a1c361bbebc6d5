"""Tables (CSV, JSON, JSONL, Parquet) turned into chats through a column mapping.

Rows are streamed: CSV and JSONL line by line, Parquet in record batches. A JSON array is parsed
whole, so it is capped (`max_json_array_bytes`); larger sets belong in JSONL. Every mapped column
is checked against the header (or the first row) before any row is converted, so a typo fails in
the first second with the columns that do exist.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from runtune.datasets.chat_jsonl import numbered_lines, parse_json_line
from runtune.datasets.problems import DataError, Location
from runtune.datasets.records import IMAGE_PART, RawExample, Rows, canonical_split, text_part
from runtune.datasets.resolve import ImageResolver
from runtune.schemas.datasets import ColumnMapping

TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".parquet")
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_PARQUET_BATCH = 64  # rows per batch: a batch of embedded images stays a few MiB


@dataclass
class Table:
    """A table's columns, label names (Hugging Face `ClassLabel`s) and its rows as (number, row)."""

    display: str
    columns: list[str]
    rows: Iterator[tuple[int, dict[str, Any] | DataError]]
    row_word: str = "row"
    label_names: dict[str, list[str]] | None = None


def open_table(path: Path, display: str, max_json_bytes: int) -> Table:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _parquet(path, display)
    if suffix in (".csv", ".tsv"):
        return _csv(path, display, "\t" if suffix == ".tsv" else ",")
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl(path, display)
    if suffix == ".json":
        return _json_array(path, display, max_json_bytes)
    raise DataError(f"unsupported table type '{suffix}'", Location(display), code="unsupported_type")


def _csv(path: Path, display: str, delimiter: str) -> Table:
    lines = _utf8_lines(path, display)
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError("the file is empty", Location(display), code="empty_file") from None
    header[0] = header[0].removeprefix("\ufeff")

    def rows() -> Iterator[tuple[int, dict[str, Any] | DataError]]:
        for number, values in enumerate(reader, start=1):
            if not values:
                continue
            if len(values) != len(header):
                where = Location(display, number)
                yield number, DataError(f"has {len(values)} fields, the header has {len(header)}", where)
                continue
            yield number, dict(zip(header, values, strict=True))

    return Table(display, header, rows())


def _utf8_lines(path: Path, display: str) -> Iterator[str]:
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                # The csv module cannot resume mid-record, so bad bytes fail the file, naming the line.
                raise DataError(
                    f"not valid UTF-8 text (byte {exc.start} of the line)",
                    Location(display, number, row_word="line"),
                    code="invalid_encoding",
                ) from exc


def _jsonl(path: Path, display: str) -> Table:
    lines = numbered_lines(path, display)
    first = next(lines, None)
    if first is None:
        raise DataError("the file is empty", Location(display), code="empty_file")
    if isinstance(first[1], DataError):
        raise first[1]
    head = parse_json_line(first[1], Location(display, first[0], row_word="line"))
    if not isinstance(head, dict):
        raise DataError("each line must be a JSON object", Location(display, first[0], row_word="line"))

    def rows() -> Iterator[tuple[int, dict[str, Any] | DataError]]:
        yield first[0], head
        for number, text in lines:
            where = Location(display, number, row_word="line")
            if isinstance(text, DataError):
                yield number, text
                continue
            try:
                record = parse_json_line(text, where)
            except DataError as exc:
                yield number, exc
                continue
            yield number, record if isinstance(record, dict) else DataError("not a JSON object", where)

    return Table(display, list(head), rows(), row_word="line")


def _json_array(path: Path, display: str, max_bytes: int) -> Table:
    size = path.stat().st_size
    if size > max_bytes:
        raise DataError(
            f"a JSON array of {size:,} bytes is over the {max_bytes:,}-byte limit: use JSONL (one object per line)",
            Location(display),
            code="file_too_large",
        )
    try:
        records = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"not valid UTF-8 text (byte {exc.start})", Location(display), code="invalid_encoding") from exc
    except json.JSONDecodeError as exc:
        where = Location(display, exc.lineno, row_word="line")
        raise DataError(f"malformed JSON ({exc.msg} at column {exc.colno})", where, code="invalid_json") from exc
    if isinstance(records, dict) and isinstance(records.get("data"), list):
        records = records["data"]
    if not isinstance(records, list) or not records:
        raise DataError("expected a non-empty JSON array of objects", Location(display), code="empty_file")
    columns = list(records[0]) if isinstance(records[0], dict) else []

    def rows() -> Iterator[tuple[int, dict[str, Any] | DataError]]:
        for number, record in enumerate(records, start=1):
            ok = isinstance(record, dict)
            yield number, record if ok else DataError("not a JSON object", Location(display, number, row_word="item"))

    return Table(display, columns, rows(), row_word="item")


def _parquet(path: Path, display: str) -> Table:
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise DataError(f"not a readable Parquet file ({exc})", Location(display), code="invalid_parquet") from exc

    def rows() -> Iterator[tuple[int, dict[str, Any] | DataError]]:
        number = 0
        for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH):
            for record in batch.to_pylist():
                number += 1
                yield number, record

    return Table(display, parquet.schema_arrow.names, rows(), label_names=hf_label_names(parquet.schema_arrow.metadata))


def hf_label_names(metadata: dict[bytes, bytes] | None) -> dict[str, list[str]] | None:
    """`ClassLabel` names from the schema metadata `datasets` writes, so label 3 reads as its name."""
    if not metadata or b"huggingface" not in metadata:
        return None
    try:
        features = json.loads(metadata[b"huggingface"])["info"]["features"]
    except (ValueError, KeyError, TypeError):
        return None
    return {
        column: list(feature["names"])
        for column, feature in features.items()
        if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and feature.get("names")
    } or None


def check_mapping(mapping: ColumnMapping, columns: Iterable[str], display: str) -> None:
    """Every mapped column and template placeholder must exist; the error lists those that do."""
    known = set(columns)
    wanted = [(f"mapping.{name}", getattr(mapping, name)) for name in ("image", "answer", "label", "split")] + [
        ("mapping.user", placeholder) for placeholder in placeholders(mapping.user)
    ]
    for param, column in wanted:
        if column is not None and column not in known:
            raise DataError(
                f"column '{column}' ({param}) does not exist; the columns are: {', '.join(sorted(known)) or '(none)'}",
                Location(display, field=column),
                code="unknown_column",
            )
    if mapping.answer is None and mapping.label is None:
        raise DataError("the mapping needs an 'answer' or a 'label' column", Location(display), code="no_answer")


def placeholders(template: str | None) -> list[str]:
    return [name for name in _PLACEHOLDER.findall(template or "") if name != "labels"]


def table_rows(table: Table, mapping: ColumnMapping, resolver: ImageResolver, *, labels_text: str = "") -> Rows:
    check_mapping(mapping, table.columns, table.display)
    names = table.label_names or {}
    for number, record in table.rows:
        if isinstance(record, DataError):
            yield record
            continue
        where = Location(table.display, number, row_word=table.row_word)
        try:
            yield mapped_example(record, mapping, resolver, where, names, labels_text)
        except DataError as exc:
            yield exc


def mapped_example(
    record: dict[str, Any],
    mapping: ColumnMapping,
    resolver: ImageResolver,
    where: Location,
    label_names: dict[str, list[str]],
    labels_text: str = "",
) -> RawExample:
    def value(column: str) -> Any:
        if column not in record:
            raise DataError("the column is missing in this row", where.at(field=column), code="unknown_column")
        return record[column]

    def text(column: str) -> str:
        raw = value(column)
        if isinstance(raw, int) and column in label_names and 0 <= raw < len(label_names[column]):
            return label_names[column][raw]
        return "" if raw is None else str(raw)

    user_text = _PLACEHOLDER.sub(lambda m: labels_text if m[1] == "labels" else text(m[1]), mapping.user or "").strip()
    content: list[dict[str, Any]] = []
    images = []
    if mapping.image is not None:
        images.append(resolver.resolve(value(mapping.image), where.at(field=mapping.image)))
        content.append(dict(IMAGE_PART))
    if user_text:
        content.append(text_part(user_text))
    if not content:
        raise DataError("the user turn is empty (no image and no text)", where, code="empty_row")
    label = text(mapping.label).strip() if mapping.label else None
    if mapping.label and not label:
        raise DataError("the label is empty", where.at(field=mapping.label), code="empty_label")
    answer = text(mapping.answer).strip() if mapping.answer else label
    messages = [{"role": "system", "content": [text_part(mapping.system)]}] if mapping.system else []
    messages += [{"role": "user", "content": content}, {"role": "assistant", "content": [text_part(answer or "")]}]
    split = canonical_split(value(mapping.split), where.at(field=mapping.split)) if mapping.split else None
    return RawExample(messages=messages, where=where, images=images, label=label, split=split)
