"""Writing a split as canonical shards (and preview pages) with memory bounded by one row group.

`canonical.ShardWriter` holds a whole shard (up to 128 MiB) in memory before encoding it; here
rows go to a local Parquet file one row group at a time and the finished file is uploaded in
chunks, so memory stays flat however large the split. Same schema, same paths, same roll-over.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from runtune.blob_layout import dataset_prefix
from runtune.datasets.canonical import (
    SCHEMA,
    SHARD_MAX_BYTES,
    SHARD_MAX_ROWS,
    Example,
    shard_path,
    table_of,
)
from runtune.datasets.images import NormalizedImage
from runtune.ports.blobs import BlobStore

ROW_GROUP_ROWS = 256  # what canonical.encode_shard uses: readers stream a shard a row group at a time
PREVIEW_PAGE_ROWS = 100


class StreamingShardWriter:
    def __init__(self, blobs: BlobStore, uid: str, dataset_id: str, split: str, workdir: Path) -> None:
        self._blobs, self._uid, self._dataset_id, self._split = blobs, uid, dataset_id, split
        self._workdir = workdir
        self._group: list[Example] = []
        self._writer: pq.ParquetWriter | None = None
        self._file: Path | None = None
        self._shard_rows = 0
        self._shard_bytes = 0
        self.rows = 0
        self.paths: list[str] = []

    def add(self, example: Example) -> None:
        self._group.append(example)
        self._shard_rows += 1
        self._shard_bytes += sum(len(image) for image in example.images)
        self.rows += 1
        if len(self._group) >= ROW_GROUP_ROWS:
            self._write_group()
        if self._shard_rows >= SHARD_MAX_ROWS or self._shard_bytes >= SHARD_MAX_BYTES:
            self._finish_shard()

    def close(self) -> None:
        self._finish_shard()

    def _write_group(self) -> None:
        if not self._group:
            return
        if self._writer is None:
            self._file = self._workdir / f"{self._split}-{len(self.paths):05d}.parquet"
            self._writer = pq.ParquetWriter(self._file, SCHEMA, compression="zstd")
        self._writer.write_table(table_of(self._group), row_group_size=ROW_GROUP_ROWS)
        self._group = []

    def _finish_shard(self) -> None:
        self._write_group()
        if self._writer is None or self._file is None:
            return
        self._writer.close()
        path = shard_path(self._uid, self._dataset_id, self._split, len(self.paths))
        self._blobs.upload_file(path, self._file, content_type="application/vnd.apache.parquet")
        self._file.unlink(missing_ok=True)
        self.paths.append(path)
        self._writer, self._file, self._shard_rows, self._shard_bytes = None, None, 0, 0


def preview_path(uid: str, dataset_id: str, split: str, page: int) -> str:
    return f"{dataset_prefix(uid, dataset_id)}preview/{split}-{page:05d}.jsonl"


def sample_id(split: str, index: int) -> str:
    return f"{split}-{index:07d}"


def preview_row(split: str, index: int, example: Example, images: list[NormalizedImage]) -> dict[str, Any]:
    """What `GET /v1/datasets/{id}/samples` shows for one example: its text and small thumbnails."""
    image_index = 0
    messages = []
    for message in example.messages:
        content = []
        for part in message["content"]:
            if part["type"] == "image":
                content.append({"type": "image", "image_index": image_index})
                image_index += 1
            else:
                content.append({"type": "text", "text": part["text"]})
        messages.append({"role": message["role"], "content": content})
    return {
        "object": "dataset.sample",
        "id": sample_id(split, index),
        "split": split,
        "index": index,
        "messages": messages,
        "label": example.label,
        "images": [
            {"width": image.width, "height": image.height, "path": path, "thumbnail": image.thumbnail_data_url()}
            for image, path in zip(images, example.image_paths or [None] * len(images), strict=True)
        ],
    }


class PreviewWriter:
    """Pages of `PREVIEW_PAGE_ROWS` preview rows per split, so a page of samples is one small read."""

    def __init__(self, blobs: BlobStore, uid: str, dataset_id: str, split: str) -> None:
        self._blobs, self._uid, self._dataset_id, self._split = blobs, uid, dataset_id, split
        self._lines: list[str] = []
        self.rows = 0

    def add(self, example: Example, images: list[NormalizedImage]) -> None:
        self._lines.append(json.dumps(preview_row(self._split, self.rows, example, images)))
        self.rows += 1
        if len(self._lines) >= PREVIEW_PAGE_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        page = (self.rows - 1) // PREVIEW_PAGE_ROWS
        body = ("\n".join(self._lines) + "\n").encode()
        # x-ndjson, not application/json: the storage emulator parses any application/json* body.
        self._blobs.upload_bytes(
            preview_path(self._uid, self._dataset_id, self._split, page), body, content_type="application/x-ndjson"
        )
        self._lines = []


def read_preview_page(blobs: BlobStore, uid: str, dataset_id: str, split: str, page: int) -> list[dict[str, Any]]:
    data = blobs.download_bytes(preview_path(uid, dataset_id, split, page))
    return [json.loads(line) for line in data.decode().splitlines() if line]
