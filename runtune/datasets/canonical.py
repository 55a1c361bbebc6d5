"""The canonical dataset format (DESIGN.md section 4), shared by the preprocessing service that
writes it and the trainer and evaluators that read it.

Parquet shards per split at `{dataset_prefix}{split}-NNNNN.parquet` (runtune.blob_layout), one row per
example in the TRL vision layout:

- `messages`: the chat, each message `{"role", "content": [{"type": "text", "text"} | {"type": "image"}]}`;
  the n-th `{"type": "image"}` part refers to the n-th entry of `images`;
- `images`: `[{"bytes": <encoded image>, "path": <name it came from, or null>}]` (the layout
  `datasets.Image` uses, so `datasets.load_dataset("parquet")` reads them back as images);
- `label`: the answer's class for classification sets, else null.

Image bytes live inside the shards, so a trainer streams a few large objects, never thousands of
small ones. A content part is stored as `{"type", "text"}` with `text` null for image parts, which
is how `datasets` itself stores the TRL vision layout.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from runtune.blob_layout import dataset_prefix
from runtune.ports.blobs import BlobStore

SPLITS = ("train", "validation", "test")
SHARD_PATTERN = re.compile(r"^(?P<split>[a-z]+)-(?P<index>\d{5})\.parquet$")
# A shard holds at most this many rows or about this many bytes, whichever comes first: big enough
# that a run streams few objects, small enough that a worker holds one in memory comfortably.
SHARD_MAX_ROWS = 5_000
SHARD_MAX_BYTES = 128 * 1024 * 1024

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
PART_TYPE = pa.struct([("type", pa.string()), ("text", pa.string())])
MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.list_(PART_TYPE))])
SCHEMA = pa.schema(
    [
        pa.field("messages", pa.list_(MESSAGE_TYPE), nullable=False),
        pa.field("images", pa.list_(IMAGE_TYPE), nullable=False),
        pa.field("label", pa.string(), nullable=True),
    ]
)


@dataclass(frozen=True)
class Example:
    messages: list[dict[str, Any]]
    images: list[bytes] = field(default_factory=list)
    image_paths: list[str | None] = field(default_factory=list)
    label: str | None = None

    def to_row(self) -> dict[str, Any]:
        paths = self.image_paths or [None] * len(self.images)
        return {
            "messages": [
                {"role": m["role"], "content": [{"type": p["type"], "text": p.get("text")} for p in m["content"]]}
                for m in self.messages
            ],
            "images": [{"bytes": data, "path": path} for data, path in zip(self.images, paths, strict=True)],
            "label": self.label,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Example:
        images = row.get("images") or []
        paths = [image.get("path") for image in images]
        return cls(
            messages=[
                {
                    "role": m["role"],
                    "content": [
                        {"type": "text", "text": p["text"]} if p["type"] == "text" else {"type": p["type"]}
                        for p in m["content"]
                    ],
                }
                for m in row["messages"]
            ],
            images=[image["bytes"] for image in images],
            image_paths=paths if any(path is not None for path in paths) else [],
            label=row.get("label"),
        )


def shard_path(uid: str, dataset_id: str, split: str, index: int) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return f"{dataset_prefix(uid, dataset_id)}{split}-{index:05d}.parquet"


def shards_of(blobs: BlobStore, uid: str, dataset_id: str, split: str) -> list[str]:
    """The shard paths of one split, in order."""
    prefix = dataset_prefix(uid, dataset_id)
    paths = []
    for info in blobs.list(prefix):
        match = SHARD_PATTERN.match(info.path[len(prefix) :])
        if match and match["split"] == split:
            paths.append(info.path)
    return sorted(paths)


def table_of(examples: list[Example]) -> pa.Table:
    return pa.Table.from_pylist([example.to_row() for example in examples], schema=SCHEMA)


def encode_shard(examples: list[Example]) -> bytes:
    sink = io.BytesIO()
    # Small row groups: a reader can stream a shard without decoding all its images at once.
    pq.write_table(table_of(examples), sink, row_group_size=256, compression="zstd")
    return sink.getvalue()


def decode_shard(data: bytes) -> Iterator[Example]:
    parquet = pq.ParquetFile(io.BytesIO(data))
    for batch in parquet.iter_batches(batch_size=256):
        for row in batch.to_pylist():
            yield Example.from_row(row)


class ShardWriter:
    """Writes one split as numbered shards, rolling over by rows or bytes; never holds more than one shard."""

    def __init__(self, blobs: BlobStore, uid: str, dataset_id: str, split: str) -> None:
        self._blobs, self._uid, self._dataset_id, self._split = blobs, uid, dataset_id, split
        self._pending: list[Example] = []
        self._pending_bytes = 0
        self.rows = 0
        self.paths: list[str] = []

    def add(self, example: Example) -> None:
        self._pending.append(example)
        self._pending_bytes += sum(len(image) for image in example.images) + len(str(example.messages))
        self.rows += 1
        if len(self._pending) >= SHARD_MAX_ROWS or self._pending_bytes >= SHARD_MAX_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        path = shard_path(self._uid, self._dataset_id, self._split, len(self.paths))
        self._blobs.upload_bytes(path, encode_shard(self._pending), content_type="application/vnd.apache.parquet")
        self.paths.append(path)
        self._pending, self._pending_bytes = [], 0


def read_split(blobs: BlobStore, uid: str, dataset_id: str, split: str) -> Iterator[Example]:
    """Stream one split shard by shard."""
    for path in shards_of(blobs, uid, dataset_id, split):
        yield from decode_shard(blobs.download_bytes(path))
