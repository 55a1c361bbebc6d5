import io

import pyarrow.parquet as pq

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
