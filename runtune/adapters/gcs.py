"""Cloud Storage adapter of the blob port (gcp-storage-emulator locally, GCS in the cloud)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO

import google.auth
from google.api_core import exceptions as gexc
from google.auth.transport import requests as auth_requests
from google.cloud import storage

from runtune.errors import NotFound
from runtune.ports.blobs import BlobInfo

_CHUNK = 8 << 20  # resumable uploads go in 8 MiB chunks: bounded memory for any object size


class GcsBlobStore:
    def __init__(self, client: storage.Client, bucket: str, *, emulator_host: str | None = None) -> None:
        self._client = client
        self._bucket = client.bucket(bucket)
        self._emulator_host = emulator_host

    @classmethod
    def for_bucket(cls, project_id: str, bucket: str) -> GcsBlobStore:
        emulator_host = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator_host:
            from google.auth.credentials import AnonymousCredentials

            client = storage.Client(project=project_id, credentials=AnonymousCredentials())
        else:
            client = storage.Client(project=project_id)
        return cls(client, bucket, emulator_host=emulator_host)

    def ensure_bucket(self) -> None:
        """Create the bucket if missing (local platform only; Terraform owns cloud buckets)."""
        if not self._bucket.exists():
            self._client.create_bucket(self._bucket.name)

    def _blob(self, path: str) -> storage.Blob:
        return self._bucket.blob(path, chunk_size=_CHUNK)

    def upload_bytes(self, path: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        self._bucket.blob(path).upload_from_string(data, content_type=content_type)

    def upload_stream(self, path: str, stream: BinaryIO, *, content_type: str = "application/octet-stream") -> None:
        self._blob(path).upload_from_file(stream, content_type=content_type)

    def upload_file(self, path: str, local_path: Path, *, content_type: str | None = None) -> None:
        self._blob(path).upload_from_filename(str(local_path), content_type=content_type)

    def download_bytes(self, path: str) -> bytes:
        try:
            return self._bucket.blob(path).download_as_bytes()
        except gexc.NotFound as exc:
            raise NotFound(f"object '{path}' does not exist") from exc

    def download_file(self, path: str, local_path: Path) -> None:
        local_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._bucket.blob(path).download_to_filename(str(local_path))
        except gexc.NotFound as exc:
            local_path.unlink(missing_ok=True)
            raise NotFound(f"object '{path}' does not exist") from exc

    def iter_chunks(self, path: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        blob = self._bucket.blob(path)
        try:
            with blob.open("rb", chunk_size=chunk_size) as reader:
                while chunk := reader.read(chunk_size):
                    yield chunk
        except gexc.NotFound as exc:
            raise NotFound(f"object '{path}' does not exist") from exc

    def info(self, path: str) -> BlobInfo | None:
        blob = self._bucket.get_blob(path)
        if blob is None:
            return None
        return BlobInfo(path=blob.name, size=blob.size or 0, content_type=blob.content_type)

    def list(self, prefix: str) -> list[BlobInfo]:
        return [
            BlobInfo(path=b.name, size=b.size or 0, content_type=b.content_type)
            for b in self._client.list_blobs(self._bucket, prefix=prefix)
        ]

    def delete(self, path: str) -> None:
        # Deleting is idempotent: a retried cleanup must not fail.
        with contextlib.suppress(gexc.NotFound):
            self._bucket.blob(path).delete()

    def delete_prefix(self, prefix: str) -> int:
        if not prefix or not prefix.endswith("/"):
            raise ValueError(f"refusing to delete prefix {prefix!r}: it must end with '/'")
        blobs = list(self._client.list_blobs(self._bucket, prefix=prefix))
        for blob in blobs:
            self.delete(blob.name)
        return len(blobs)

    # -- URLs handed to browsers and CLIs -------------------------------------------------------

    def signed_download_url(self, path: str, *, expires: timedelta, filename: str | None = None) -> str:
        # `response-content-disposition` is part of the signed query: GCS answers with that header.
        disposition = f'attachment; filename="{_header_safe(filename)}"' if filename else None
        return self._blob(path).generate_signed_url(
            version="v4",
            expiration=expires,
            method="GET",
            response_disposition=disposition,
            **self._signing_kwargs(),
        )

    def signed_upload_url(self, path: str, *, content_type: str, expires: timedelta) -> str:
        return self._blob(path).generate_signed_url(
            version="v4",
            expiration=expires,
            method="PUT",
            content_type=content_type,
            **self._signing_kwargs(),
        )

    def resumable_upload_url(self, path: str, *, content_type: str, size: int | None, origin: str | None) -> str:
        # The session is opened server-side with the service's own credentials; the session URI
        # is the only credential the client gets, and it is bound to this one object.
        return self._blob(path).create_resumable_upload_session(content_type=content_type, size=size, origin=origin)

    @cached_property
    def _credentials(self) -> Any:
        if self._emulator_host:
            # The emulator checks no signature, but the URL must be a real V4 one, so sign with a
            # throwaway key of this process.
            return _throwaway_signer()
        credentials, _ = google.auth.default()
        return credentials

    def _signing_kwargs(self) -> dict[str, Any]:
        credentials = self._credentials
        if self._emulator_host:
            return {"credentials": credentials, "api_access_endpoint": self._emulator_host}
        if hasattr(credentials, "sign_bytes") and getattr(credentials, "signer_email", None):
            return {"credentials": credentials}
        # Cloud Run's metadata-server credentials cannot sign locally: sign through the IAM
        # signBlob API with the service account's own access token.
        if not credentials.valid:
            credentials.refresh(auth_requests.Request())
        return {
            "service_account_email": credentials.service_account_email,
            "access_token": credentials.token,
        }


def _throwaway_signer() -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return service_account.Credentials.from_service_account_info(
        {
            "type": "service_account",
            "client_email": "local-signer@demo-runtune.iam.gserviceaccount.com",
            "private_key": pem,
            "private_key_id": "local",
            "token_uri": "http://127.0.0.1/token",
        }
    )


def _header_safe(filename: str) -> str:
    """A file name as a quoted header value may hold it (no quotes, backslashes or control bytes)."""
    return re.sub(r'[\x00-\x1f"\\]', "_", filename)
