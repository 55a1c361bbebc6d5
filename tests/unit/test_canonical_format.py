import io
from typing import BinaryIO

import pyarrow.parquet as pq
import pytest

from runtune.datasets import canonical
from runtune.datasets.canonical import SCHEMA, Example, ShardWriter, decode_shard, shard_path
from tests.datasets.builders import MemoryBlobStore

EXAMPLE = Example(
    messages=[
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Which breed is this?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "abyssinian"}]},
    ],
    images=[b"\xff\xd8jpeg-bytes"],
    image_paths=["abyssinian/1.jpg"],
    label="abyssinian",
)
TEXT_ONLY = Example(messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}])


def encode_shard(examples: list[Example]) -> bytes:
    """One shard written by the format's one writer, read back from the store."""
    blobs = MemoryBlobStore()
    writer = ShardWriter(blobs, "u", "d", "train")
    for example in examples:
        writer.add(example)
    writer.close()
    assert writer.paths == ["users/u/datasets/d/train-00000.parquet"]
    return blobs.download_bytes(writer.paths[0])


def test_shards_round_trip_examples_exactly() -> None:
    assert list(decode_shard(encode_shard([EXAMPLE, TEXT_ONLY]))) == [EXAMPLE, TEXT_ONLY]


def test_shards_use_the_trl_vision_layout() -> None:
    table = pq.read_table(io.BytesIO(encode_shard([EXAMPLE])))
    assert table.schema.equals(SCHEMA)
    row = table.to_pylist()[0]
    assert row["messages"][0]["content"][0] == {"type": "image", "text": None}
    assert row["images"] == [{"bytes": b"\xff\xd8jpeg-bytes", "path": "abyssinian/1.jpg"}]
    assert row["label"] == "abyssinian"


def test_shard_paths_are_owned_and_numbered() -> None:
    assert shard_path("uid-1", "ds-1", "train", 3) == "users/uid-1/datasets/ds-1/train-00003.parquet"


def test_the_writer_rolls_over_into_numbered_shards_read_back_in_order(monkeypatch) -> None:
    monkeypatch.setattr(canonical, "SHARD_MAX_ROWS", 300)  # two row groups and a bit per shard
    blobs = MemoryBlobStore()
    writer = ShardWriter(blobs, "u", "d", "train")
    examples = [Example(messages=[{"role": "user", "content": [{"type": "text", "text": str(i)}]}]) for i in range(700)]
    for example in examples:
        writer.add(example)
    writer.close()
    assert writer.paths == [shard_path("u", "d", "train", i) for i in range(3)]
    assert [pq.ParquetFile(io.BytesIO(blobs.download_bytes(p))).metadata.num_rows for p in writer.paths] == [
        300,
        300,
        100,
    ]
    assert list(canonical.read_split(blobs, "u", "d", "train")) == examples


class FailingStore(MemoryBlobStore):
    """The bucket refuses the upload after its first chunk."""

    def upload_stream(self, path: str, stream: BinaryIO, *, content_type: str = "application/octet-stream") -> None:
        stream.read(1 << 20)
        raise OSError("503 from the bucket")


def test_an_upload_failure_reaches_the_writer_and_leaves_no_shard() -> None:
    blobs = FailingStore()
    writer = ShardWriter(blobs, "u", "d", "train")
    big = Example(messages=EXAMPLE.messages, images=[bytes(64 * 1024)] * 4)
    with pytest.raises(OSError, match="503 from the bucket"):
        for _ in range(2000):  # far more than the pipe holds: the writer must not block forever
            writer.add(big)
        writer.close()
    writer.abort()
    assert blobs.objects == {}


def test_an_aborted_shard_is_never_stored() -> None:
    blobs = MemoryBlobStore()
    writer = ShardWriter(blobs, "u", "d", "train")
    for _ in range(300):
        writer.add(EXAMPLE)
    writer.abort()
    assert blobs.objects == {}
