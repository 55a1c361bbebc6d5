"""The Cloud Storage adapter against gcp-storage-emulator."""

import io
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from runtune.adapters.gcs import GcsBlobStore
from runtune.errors import NotFound

pytestmark = pytest.mark.emulators


@pytest.fixture
def blobs(emulators) -> GcsBlobStore:
    store = GcsBlobStore.for_bucket(emulators.project_id, emulators.bucket)
    store.ensure_bucket()
    return store


@pytest.fixture
def prefix() -> str:
    return f"test/{uuid.uuid4().hex[:8]}/"


def test_upload_download_list_delete(blobs: GcsBlobStore, prefix: str) -> None:
    blobs.upload_bytes(prefix + "a.txt", b"alpha", content_type="text/plain")
    blobs.upload_stream(prefix + "b.bin", io.BytesIO(b"\x00" * 1000))
    assert blobs.download_bytes(prefix + "a.txt") == b"alpha"
    info = blobs.info(prefix + "b.bin")
    assert info is not None and info.size == 1000
    assert sorted(b.path for b in blobs.list(prefix)) == [prefix + "a.txt", prefix + "b.bin"]
    blobs.delete(prefix + "a.txt")
    blobs.delete(prefix + "a.txt")  # idempotent
    assert blobs.info(prefix + "a.txt") is None
    with pytest.raises(NotFound):
        blobs.download_bytes(prefix + "a.txt")


def test_file_round_trip_and_chunks(blobs: GcsBlobStore, prefix: str, tmp_path: Path) -> None:
    source = tmp_path / "big.bin"
    payload = bytes(range(256)) * 40_000  # 10 MiB: more than one upload chunk
    source.write_bytes(payload)
    blobs.upload_file(prefix + "big.bin", source)
    target = tmp_path / "out" / "big.bin"
    blobs.download_file(prefix + "big.bin", target)
    assert target.read_bytes() == payload
    assert b"".join(blobs.iter_chunks(prefix + "big.bin", chunk_size=1 << 20)) == payload


def test_delete_prefix_only_touches_the_prefix(blobs: GcsBlobStore, prefix: str) -> None:
    for name in ("x/1", "x/2", "y/1"):
        blobs.upload_bytes(prefix + name, b"1")
    assert blobs.delete_prefix(prefix + "x/") == 2
    assert [b.path for b in blobs.list(prefix)] == [prefix + "y/1"]
    with pytest.raises(ValueError):
        blobs.delete_prefix(prefix + "y")


def test_signed_upload_url_accepts_a_put(blobs: GcsBlobStore, prefix: str) -> None:
    # (gcp-storage-emulator parses any application/json* body as JSON, so JSONL goes as x-ndjson.)
    url = blobs.signed_upload_url(
        prefix + "up.jsonl", content_type="application/x-ndjson", expires=timedelta(minutes=5)
    )
    assert "X-Goog-Signature=" in url
    response = httpx.put(url, content=b'{"a": 1}\n', headers={"content-type": "application/x-ndjson"})
    assert response.status_code in (200, 201)
    assert blobs.download_bytes(prefix + "up.jsonl") == b'{"a": 1}\n'


def test_signed_download_url_serves_the_object(blobs: GcsBlobStore, prefix: str) -> None:
    blobs.upload_bytes(prefix + "d.txt", b"download me")
    url = blobs.signed_download_url(prefix + "d.txt", expires=timedelta(minutes=5))
    assert "X-Goog-Expires=300" in url
    assert httpx.get(url).content == b"download me"


def test_resumable_upload_in_chunks(blobs: GcsBlobStore, prefix: str) -> None:
    payload = b"0123456789" * 30_000  # 300 kB in two 256 KiB-aligned chunks
    url = blobs.resumable_upload_url(
        prefix + "r.bin", content_type="application/octet-stream", size=len(payload), origin=None
    )
    first = 256 * 1024
    r1 = httpx.put(url, content=payload[:first], headers={"content-range": f"bytes 0-{first - 1}/{len(payload)}"})
    assert r1.status_code == 308
    r2 = httpx.put(
        url,
        content=payload[first:],
        headers={"content-range": f"bytes {first}-{len(payload) - 1}/{len(payload)}"},
    )
    assert r2.status_code in (200, 201)
    assert blobs.download_bytes(prefix + "r.bin") == payload
