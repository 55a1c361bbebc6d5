"""The canonical dataset format (DESIGN.md section 4), shared by the preprocessing service that
writes it and the trainer and evaluators that read it.

Parquet shards per split at `{dataset_prefix}{split}-NNNNN.parquet` (runtune.blob_layout), one row per
example in the TRL vision layout:

- `messages`: the chat, each message `{"role", "content": [{"type": "text", "text"} | {"type": "image"}]}`;
  the n-th `{"type": "image"}` part refers to the n-th entry of `images`;
- `images`: `[{"bytes": <encoded image>, "path": <name it came from, or null>}]` (the layout
  `datasets.Image` uses, so `datasets.load_dataset("parquet")` reads them back as images);
- `label`: the answer's class for classification sets, else null;
- `rejected`: a preference pair's non-preferred answer (a list of one assistant message, as in
  `messages`), whose preferred answer is the last message of `messages`; null for every other set.
  So a preference row read as a chat is its prompt and preferred answer, and one reader serves both.

Image bytes live inside the shards, so a trainer streams a few large objects, never thousands of
small ones. A content part is stored as `{"type", "text"}` with `text` null for image parts, which
is how `datasets` itself stores the TRL vision layout.
"""

from __future__ import annotations

import collections
import io
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
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
# Rows per Parquet row group: readers stream a shard a row group at a time.
ROW_GROUP_ROWS = 256
# Row groups a writer may hand on before it waits for the encoder (memory: this many + 1 groups).
_QUEUED_GROUPS = 2

IMAGE_TYPE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
PART_TYPE = pa.struct([("type", pa.string()), ("text", pa.string())])
MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.list_(PART_TYPE))])
SCHEMA = pa.schema(
    [
        pa.field("messages", pa.list_(MESSAGE_TYPE), nullable=False),
        pa.field("images", pa.list_(IMAGE_TYPE), nullable=False),
        pa.field("label", pa.string(), nullable=True),
        pa.field("rejected", pa.list_(MESSAGE_TYPE), nullable=True),
    ]
)


@dataclass(frozen=True)
class Example:
    messages: list[dict[str, Any]]
    images: list[bytes] = field(default_factory=list)
    image_paths: list[str | None] = field(default_factory=list)
    label: str | None = None
    # A preference pair's non-preferred answer; the preferred one is `messages[-1]`.
    rejected: list[dict[str, Any]] | None = None

    @property
    def is_pair(self) -> bool:
        return self.rejected is not None

    def rejected_messages(self) -> list[dict[str, Any]]:
        """The pair's other chat: the same prompt with the non-preferred answer."""
        assert self.rejected is not None
        return [*self.messages[:-1], *self.rejected]

    def to_row(self) -> dict[str, Any]:
        paths = self.image_paths or [None] * len(self.images)
        return {
            "messages": _stored_messages(self.messages),
            "images": [{"bytes": data, "path": path} for data, path in zip(self.images, paths, strict=True)],
            "label": self.label,
            "rejected": _stored_messages(self.rejected) if self.rejected is not None else None,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Example:
        images = row.get("images") or []
        paths = [image.get("path") for image in images]
        rejected = row.get("rejected")  # absent in shards written before preference sets
        return cls(
            messages=_read_messages(row["messages"]),
            images=[image["bytes"] for image in images],
            image_paths=paths if any(path is not None for path in paths) else [],
            label=row.get("label"),
            rejected=_read_messages(rejected) if rejected is not None else None,
        )


def _stored_messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {"role": m["role"], "content": [{"type": p["type"], "text": p.get("text")} for p in m["content"]]}
        for m in messages
    ]


def _read_messages(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "role": m["role"],
            "content": [
                {"type": "text", "text": p["text"]} if p["type"] == "text" else {"type": p["type"]}
                for p in m["content"]
            ],
        }
        for m in rows
    ]


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


def decode_shard(data: bytes) -> Iterator[Example]:
    parquet = pq.ParquetFile(io.BytesIO(data))
    for batch in parquet.iter_batches(batch_size=ROW_GROUP_ROWS):
        for row in batch.to_pylist():
            yield Example.from_row(row)


class ShardWriter:
    """The one writer of the format: one split as numbered shards, rolling over by rows or bytes.

    Rows are encoded a row group at a time straight into the shard's upload, which a background
    thread streams to the bucket while the shard grows (`BlobStore.upload_stream`: a resumable
    upload in 8 MiB chunks). Memory holds one row group and a few chunks, never a shard, and the
    upload overlaps whatever produces the rows. `close()` finishes the last shard and waits for
    its upload; `abort()` abandons the upload in flight (an unfinished upload creates no object).
    """

    def __init__(self, blobs: BlobStore, uid: str, dataset_id: str, split: str) -> None:
        self._blobs, self._uid, self._dataset_id, self._split = blobs, uid, dataset_id, split
        self._group: list[Example] = []
        self._shard: _ShardUpload | None = None
        self._shard_rows = 0
        self._shard_bytes = 0
        self.rows = 0
        self.paths: list[str] = []
        # Seconds the upload threads spent streaming, and the caller spent waiting for them.
        self.upload_seconds = 0.0
        self.wait_seconds = 0.0

    def add(self, example: Example) -> None:
        self._group.append(example)
        self._shard_rows += 1
        self._shard_bytes += sum(len(image) for image in example.images) + len(str(example.messages))
        self.rows += 1
        if len(self._group) >= ROW_GROUP_ROWS:
            self._write_group()
        if self._shard_rows >= SHARD_MAX_ROWS or self._shard_bytes >= SHARD_MAX_BYTES:
            self._finish_shard()

    def close(self) -> None:
        """Finish the last shard and wait until every shard is stored (raises an upload's error)."""
        self._finish_shard()

    def abort(self) -> None:
        if self._shard is not None:
            self._shard.abort()
            self._shard = None

    def _write_group(self) -> None:
        if not self._group:
            return
        if self._shard is None:
            path = shard_path(self._uid, self._dataset_id, self._split, len(self.paths))
            self._shard = _ShardUpload(self._blobs, path)
            self.paths.append(path)
        self._shard.write(self._group)
        self._group = []

    def _finish_shard(self) -> None:
        self._write_group()
        if self._shard is None:
            return
        shard, self._shard = self._shard, None
        started = time.perf_counter()
        shard.finish()
        self.wait_seconds += time.perf_counter() - started
        self.upload_seconds += shard.seconds
        self._shard_rows, self._shard_bytes = 0, 0


class _ShardUpload:
    """One shard: row groups encoded on a thread of their own (at most `_QUEUED_GROUPS` waiting),
    into a Parquet writer whose bytes go through a bounded pipe to an upload thread."""

    def __init__(self, blobs: BlobStore, path: str) -> None:
        self._pipe = _Pipe()
        self._writer = pq.ParquetWriter(self._pipe, SCHEMA, compression="zstd")
        self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shard-encode")
        self._groups: deque[Future[None]] = deque()
        self.seconds = 0.0
        self._thread = threading.Thread(target=self._upload, args=(blobs, path), name="shard-upload", daemon=True)
        self._thread.start()

    def _upload(self, blobs: BlobStore, path: str) -> None:
        started = time.perf_counter()
        try:
            blobs.upload_stream(path, self._pipe, content_type="application/vnd.apache.parquet")  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the writer's thread, which raises it
            self._pipe.abort(exc)
        self.seconds = time.perf_counter() - started

    def write(self, examples: list[Example]) -> None:
        self._groups.append(self._encoder.submit(self._encode, examples))
        while len(self._groups) > _QUEUED_GROUPS:
            self._groups.popleft().result()

    def _encode(self, examples: list[Example]) -> None:
        # Small row groups: a reader can stream a shard without decoding all its images at once.
        self._writer.write_table(table_of(examples), row_group_size=ROW_GROUP_ROWS)

    def finish(self) -> None:
        try:
            while self._groups:
                self._groups.popleft().result()
            self._writer.close()  # the footer; the pipe is ours to close
            self._pipe.close()
        except BaseException:
            self.abort()
            raise
        self._encoder.shutdown()
        self._thread.join()
        self._pipe.raise_if_failed()

    def abort(self) -> None:
        self._pipe.abort(None)
        self._encoder.shutdown(cancel_futures=True)
        self._thread.join()


class _Pipe:
    """Bytes from a writer thread to a reader thread, at most `depth` chunks waiting between them.

    The writer side is what `ParquetWriter` writes to (`write`, `close`); the reader side is the
    file `upload_stream` reads (`read`, `tell`). Either side may `abort`: the other then stops
    (a blocked `write` raises, `read` raises), so a failed upload never leaves the writer waiting.
    """

    def __init__(self, chunk: int = 1 << 20, depth: int = 16) -> None:
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=depth)
        self._chunk = chunk
        # Pieces kept as they come and joined once into what is handed on (no growing buffer copied
        # and shifted): each chunk and each read is one allocation of its own size, which the C
        # allocator returns whole instead of leaving fragments of ever larger buffers in its heaps.
        self._out: list[bytes] = []  # written, not yet queued
        self._out_size = 0
        self._in: collections.deque[bytes] = collections.deque()  # queued, not yet read
        self._in_size = 0
        self._read = 0
        self._eof = False
        self._aborted = False
        self._error: BaseException | None = None
        self.closed = False  # pyarrow checks it before each write

    # -- the writer's side --

    def write(self, data: bytes) -> int:
        self._out.append(bytes(data))  # pyarrow may reuse its buffer after the call
        self._out_size += len(data)
        if self._out_size >= self._chunk:
            self._flush_out()
        return len(data)

    def _flush_out(self) -> None:
        chunk = b"".join(self._out)
        self._out.clear()
        self._out_size = 0
        self._put(chunk)

    def flush(self) -> None:
        return

    def close(self) -> None:
        if self._out:
            self._flush_out()
        self._put(None)
        self.closed = True

    def _put(self, item: bytes | None) -> None:
        while not self._aborted:
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        """The upload's error, if it failed (or was abandoned)."""
        if self._error is not None:
            raise self._error
        if self._aborted:
            raise RuntimeError("the shard upload was abandoned")

    # -- the reader's side --

    def tell(self) -> int:
        return self._read

    def read(self, size: int = -1) -> bytes:
        while not self._eof and (size < 0 or self._in_size < size):
            item = self._get()
            if item is None:
                self._eof = True
            else:
                self._in.append(item)
                self._in_size += len(item)
        take = self._in_size if size < 0 else min(size, self._in_size)
        parts: list[bytes] = []
        need = take
        while need:
            head = self._in.popleft()
            if len(head) > need:
                self._in.appendleft(head[need:])
                head = head[:need]
            parts.append(head)
            need -= len(head)
        self._in_size -= take
        self._read += take
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _get(self) -> bytes | None:
        while not self._aborted:
            try:
                return self._queue.get(timeout=0.1)
            except queue.Empty:
                continue
        raise OSError("the shard's writer stopped")

    def abort(self, error: BaseException | None) -> None:
        self._error = self._error or error
        self._aborted = True


def read_split(blobs: BlobStore, uid: str, dataset_id: str, split: str) -> Iterator[Example]:
    """Stream one split shard by shard."""
    for path in shards_of(blobs, uid, dataset_id, split):
        yield from decode_shard(blobs.download_bytes(path))
