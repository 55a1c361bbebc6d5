"""Blob port: objects in one bucket, addressed by path (`users/{uid}/datasets/...`)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, Protocol


@dataclass(frozen=True)
class BlobInfo:
    path: str
    size: int
    content_type: str | None


class BlobStore(Protocol):
    def upload_bytes(self, path: str, data: bytes, *, content_type: str = "application/octet-stream") -> None: ...

    def upload_stream(self, path: str, stream: BinaryIO, *, content_type: str = "application/octet-stream") -> None:
        """Upload from a file-like object in chunks, never holding it whole."""

    def upload_file(self, path: str, local_path: Path, *, content_type: str | None = None) -> None: ...

    def download_bytes(self, path: str) -> bytes:
        """Raises `runtune.errors.NotFound` for a missing object."""

    def download_file(self, path: str, local_path: Path) -> None: ...

    def iter_chunks(self, path: str, chunk_size: int = 1 << 20) -> Iterator[bytes]: ...

    def info(self, path: str) -> BlobInfo | None: ...

    def list(self, prefix: str) -> list[BlobInfo]: ...

    def delete(self, path: str) -> None: ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under `prefix`; returns how many went."""

    def signed_download_url(self, path: str, *, expires: timedelta, filename: str | None = None) -> str:
        """With `filename`, the download answers `Content-Disposition: attachment` under that name, so
        a browser saves it rather than opening it (a `.json` or `.md` would replace the page)."""

    def signed_upload_url(self, path: str, *, content_type: str, expires: timedelta) -> str:
        """A URL that accepts one PUT of the object's body with that content type."""

    def resumable_upload_url(self, path: str, *, content_type: str, size: int | None, origin: str | None) -> str:
        """A resumable upload session; the URL itself is the credential, so only its owner gets it."""
