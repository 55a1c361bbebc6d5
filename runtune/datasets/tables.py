"""Tables (CSV, JSON, JSONL, Parquet) turned into chats through a column mapping.

Rows are streamed: CSV and JSONL line by line, Parquet in record batches. A JSON array is parsed
whole, so it is capped (`max_json_array_bytes`); larger sets belong in JSONL. Every read is
bounded: JSONL lines (`max_line_bytes`), CSV records (`max_csv_row_bytes`) and fields (128 KiB),
JSON nesting (Python's recursion limit, as a data error), and each Parquet row group's declared
decompressed size and ratio, checked from the footer before any page is read. Every mapped column
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
from typing import IO, Any

import pyarrow.parquet as pq

from runtune.datasets.chat_jsonl import numbered_lines, parse_json_line
from runtune.datasets.limits import DatasetLimits
from runtune.datasets.preference import answer_message, check_pair
from runtune.datasets.problems import DataError, Location
from runtune.datasets.records import IMAGE_PART, RawExample, Rows, canonical_split, text_part
from runtune.datasets.resolve import ImageResolver
from runtune.schemas.datasets import ColumnMapping

TABLE_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl", ".ndjson", ".parquet")
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")
_PARQUET_BATCH = 64  # rows per batch: a batch of embedded images stays a few MiB
# Parquet footers: pyarrow's own defaults, stated so that a change there cannot lift them.
_PARQUET_THRIFT_BYTES = 100 * 1024**2
_PARQUET_THRIFT_ITEMS = 1_000_000
# Below this many decompressed bytes a column chunk's ratio is not checked (as for archives).
_RATIO_FLOOR_BYTES = 1 << 20
# `csv`'s own default field limit (process-wide, so never changed here); a longer field is an error.
CSV_FIELD_CHARS = 128 * 1024


@dataclass
class Table:
    """A table's columns, label names (Hugging Face `ClassLabel`s) and its rows as (number, row)."""

    display: str
    columns: list[str]
    rows: Iterator[tuple[int, dict[str, Any] | DataError]]
    row_word: str = "row"
    label_names: dict[str, list[str]] | None = None


def open_table(path: Path, display: str, limits: DatasetLimits) -> Table:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _parquet(path, display, limits)
    if suffix in (".csv", ".tsv"):
        return _csv(path, display, "\t" if suffix == ".tsv" else ",", limits.max_csv_row_bytes)
    if suffix in (".jsonl", ".ndjson"):
        return _jsonl(path, display, limits.max_line_bytes)
    if suffix == ".json":
        return _json_array(path, display, limits.max_json_array_bytes)
    raise DataError(f"unsupported table type '{suffix}'", Location(display), code="unsupported_type")


class _CsvLines:
    """A CSV file's lines for `csv.reader`, each record (all its lines) bounded in bytes, and the
    current record's text kept to say which column a `csv.Error` is about."""

    def __init__(self, handle: IO[bytes], display: str, max_record_bytes: int) -> None:
        self._handle, self._display, self._max = handle, display, max_record_bytes
        self.line = 0
        self.row = 0  # data rows started: the header is row 0
        self.record: list[str] = []
        self._used = 0  # bytes of the current record

    def __iter__(self) -> Iterator[str]:
        return self

    def next_record(self) -> None:
        self.record, self._used = [], 0

    def __next__(self) -> str:
        raw = self._handle.readline(self._max - self._used + 1)
        if not raw:
            raise StopIteration
        self.line += 1
        if not self.record:
            self.row += 1
        self._used += len(raw)
        if self._used > self._max:
            raise DataError(
                f"the row is longer than {self._max:,} bytes",
                Location(self._display, self.row - 1),
                code="row_too_long",
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            # The csv module cannot resume mid-record, so bad bytes fail the file, naming the line.
            raise DataError(
                f"not valid UTF-8 text (byte {exc.start} of the line)",
                Location(self._display, self.line, row_word="line"),
                code="invalid_encoding",
            ) from exc
        self.record.append(text)
        return text


def _csv(path: Path, display: str, delimiter: str, max_row_bytes: int) -> Table:
    handle = path.open("rb")
    lines = _CsvLines(handle, display, max_row_bytes)
    reader = csv.reader(lines, delimiter=delimiter)
    header = _next_record(reader, lines, display, delimiter, [])
    if header is None:
        handle.close()
        raise DataError("the file is empty", Location(display), code="empty_file")
    header[0] = header[0].removeprefix("\ufeff")

    def rows() -> Iterator[tuple[int, dict[str, Any] | DataError]]:
        with handle:
            while (values := _next_record(reader, lines, display, delimiter, header)) is not None:
                number = lines.row - 1
                if not values:
                    continue
                if len(values) != len(header):
                    where = Location(display, number)
                    yield number, DataError(f"has {len(values)} fields, the header has {len(header)}", where)
                    continue
                yield number, dict(zip(header, values, strict=True))

    return Table(display, header, rows())


def _next_record(reader: Any, lines: _CsvLines, display: str, delimiter: str, header: list[str]) -> list[str] | None:
    """The next record, or None at the end; a field over `CSV_FIELD_CHARS` fails naming row and column."""
    lines.next_record()
    try:
        values: list[str] = next(reader)
    except StopIteration:
        return None
    except csv.Error as exc:
        # `csv` stops at its field limit (128 KiB) or a malformed quote without saying which column.
        index = _long_field_index("".join(lines.record), delimiter)
        where = Location(display, lines.row - 1, field=_column_name(header, index))
        if index is not None:
            raise DataError(
                f"the field is longer than {CSV_FIELD_CHARS:,} characters", where, code="field_too_long"
            ) from exc
        raise DataError(f"malformed CSV ({exc})", where, code="invalid_csv") from exc
    for index, value in enumerate(values):
        if len(value) > CSV_FIELD_CHARS:  # another module may have raised the process-wide limit
            where = Location(display, lines.row - 1, field=_column_name(header, index))
            raise DataError(f"the field is longer than {CSV_FIELD_CHARS:,} characters", where, code="field_too_long")
    return values


def _long_field_index(record: str, delimiter: str) -> int | None:
    """Which field of a raw record is over the limit (quotes honoured), for the error message."""
    index, length, quoted = 0, 0, False
    for char in record:
        if char == '"':
            quoted = not quoted
        elif char == delimiter and not quoted:
            index, length = index + 1, 0
            continue
        length += 1
        if length > CSV_FIELD_CHARS:
            return index
    return None


def _column_name(header: list[str], index: int | None) -> str | None:
    if index is None:
        return None
    return header[index] if index < len(header) else f"column {index + 1}"


def _jsonl(path: Path, display: str, max_line_bytes: int) -> Table:
    lines = numbered_lines(path, display, max_line_bytes)
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
    except RecursionError as exc:
        raise DataError("the JSON is nested too deeply", Location(display), code="invalid_json") from exc
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


def _parquet(path: Path, display: str, limits: DatasetLimits) -> Table:
    try:
        parquet = pq.ParquetFile(
            path, thrift_string_size_limit=_PARQUET_THRIFT_BYTES, thrift_container_size_limit=_PARQUET_THRIFT_ITEMS
        )
    except Exception as exc:  # pyarrow raises several unrelated types for a corrupt file
        raise DataError(f"not a readable Parquet file ({exc})", Location(display), code="invalid_parquet") from exc
    for index in range(parquet.metadata.num_row_groups):
        check_row_group(parquet.metadata.row_group(index), index, display, limits)

    def rows() -> Iterator[tuple[int, dict[str, Any] | DataError]]:
        number = 0
        for index in range(parquet.metadata.num_row_groups):
            # One row group at a time: what was checked above is all that is decompressed at once.
            batches = parquet.iter_batches(batch_size=_PARQUET_BATCH, row_groups=[index])
            while True:
                try:
                    batch = next(batches, None)
                except Exception as exc:  # as above: a corrupt page, a bad encoding, a failed decompression
                    where = Location(display, number + 1)
                    raise DataError(
                        f"row group {index} is not readable ({exc})", where, code="invalid_parquet"
                    ) from exc
                if batch is None:
                    break
                for record in batch.to_pylist():
                    number += 1
                    yield number, record

    return Table(display, parquet.schema_arrow.names, rows(), label_names=hf_label_names(parquet.schema_arrow.metadata))


def check_row_group(group: pq.RowGroupMetaData, index: int, display: str, limits: DatasetLimits) -> None:
    """Refuse a row group that decompresses beyond the size limit, or a column chunk beyond the
    expansion ratio (a Parquet bomb), from the sizes its metadata declares."""
    where = Location(display, field=f"row group {index}")
    if group.total_byte_size > limits.max_parquet_row_group_bytes:
        raise DataError(
            f"the row group decompresses to {group.total_byte_size:,} bytes, over the limit of "
            f"{limits.max_parquet_row_group_bytes:,}",
            where,
            code="file_too_large",
        )
    for column in range(group.num_columns):
        chunk = group.column(column)
        expanded, compressed = chunk.total_uncompressed_size, max(chunk.total_compressed_size, 1)
        if expanded > _RATIO_FLOOR_BYTES and expanded > limits.max_expansion_ratio * compressed:
            raise DataError(
                f"column '{chunk.path_in_schema}' expands more than {limits.max_expansion_ratio:g}x "
                f"({compressed:,} bytes to {expanded:,}): refused as a possible decompression bomb",
                where,
                code="file_too_large",
            )


def hf_label_names(metadata: dict[bytes, bytes] | None) -> dict[str, list[str]] | None:
    """`ClassLabel` names from the schema metadata `datasets` writes, so label 3 reads as its name."""
    if not metadata or b"huggingface" not in metadata:
        return None
    try:
        features = json.loads(metadata[b"huggingface"])["info"]["features"]
    except (ValueError, KeyError, TypeError, RecursionError):
        return None
    return {
        column: list(feature["names"])
        for column, feature in features.items()
        if isinstance(feature, dict) and feature.get("_type") == "ClassLabel" and feature.get("names")
    } or None


def check_mapping(mapping: ColumnMapping, columns: Iterable[str], display: str) -> None:
    """Every mapped column and template placeholder must exist; the error lists those that do."""
    known = set(columns)
    columns_of = ("image", "answer", "label", "chosen", "rejected", "split")
    wanted = [(f"mapping.{name}", getattr(mapping, name)) for name in columns_of] + [
        ("mapping.user", placeholder) for placeholder in placeholders(mapping.user)
    ]
    for param, column in wanted:
        if column is not None and column not in known:
            raise DataError(
                f"column '{column}' ({param}) does not exist; the columns are: {', '.join(sorted(known)) or '(none)'}",
                Location(display, field=column),
                code="unknown_column",
            )
    if (mapping.chosen is None) != (mapping.rejected is None):
        missing = "rejected" if mapping.rejected is None else "chosen"
        raise DataError(
            f"a preference mapping needs both 'chosen' and 'rejected' columns; '{missing}' is missing",
            Location(display, field=f"mapping.{missing}"),
            code="no_answer",
        )
    if mapping.chosen is not None and (mapping.answer is not None or mapping.label is not None):
        raise DataError(
            "a preference mapping (chosen, rejected) takes no 'answer' or 'label' column",
            Location(display, field="mapping.answer" if mapping.answer else "mapping.label"),
            code="invalid_mapping",
        )
    if mapping.answer is None and mapping.label is None and mapping.chosen is None:
        raise DataError(
            "the mapping needs an 'answer' or a 'label' column (or 'chosen' and 'rejected')",
            Location(display),
            code="no_answer",
        )


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
    rejected = None
    if mapping.chosen and mapping.rejected:
        answer, other = text(mapping.chosen).strip(), text(mapping.rejected).strip()
        check_pair(answer, other, where.at(field=mapping.chosen), where.at(field=mapping.rejected))
        rejected = [answer_message(other)]
    messages = [{"role": "system", "content": [text_part(mapping.system)]}] if mapping.system else []
    messages += [{"role": "user", "content": content}, answer_message(answer or "")]
    split = canonical_split(value(mapping.split), where.at(field=mapping.split)) if mapping.split else None
    return RawExample(messages=messages, where=where, images=images, label=label, split=split, rejected=rejected)
