"""The local platform's stand-in for IAM: port wrappers that refuse what a deployable's cloud account
could not do, as `runtune/permissions.py` states it.

Locally every process reaches the emulators with the same anonymous credentials, so nothing would stop
a service from writing where its account only reads. Wrapped, the operation fails as the real client
fails on a 403: `google.api_core.exceptions.Forbidden` from Cloud Storage, `PermissionDenied` from
Firestore. Nothing catches those (they are not `RuntuneError`s), so a request answers the same 500 it
would answer in the cloud, and the test that drove it fails on the laptop. Secrets fail as
`SecretManagerStore` turns a 403 into: `UpstreamUnavailable` (503), the refusal itself in the log.

The table is finer than IAM (prefixes and collections, where the cloud grants whole bucket and
database): locally the code is held to what it says it does, so the table stays true.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, Literal

from google.api_core import exceptions as gexc

from runtune import permissions
from runtune.errors import UpstreamUnavailable
from runtune.ports.blobs import BlobInfo, BlobStore
from runtune.ports.metadata import AlsoWrite, Document, MetadataStore, OrderBy, Where
from runtune.ports.secrets import SecretStore

log = logging.getLogger(__name__)

_VERBS = {"r": "read", "w": "write", "d": "delete"}


class PermittedBlobStore:
    def __init__(self, inner: BlobStore, deployable: str) -> None:
        self._inner = inner
        self._deployable = deployable
        self._permissions = permissions.of(deployable)

    def _check(self, path: str, access: Literal["r", "w", "d"]) -> None:
        if not self._permissions.allows_blob(path, access):
            raise gexc.Forbidden(
                f"{self._deployable} may not {_VERBS[access]} '{path}': runtune/permissions.py grants it "
                f"{_describe(self._permissions.bucket) or 'no bucket access'}"
            )

    def _check_signing(self, path: str) -> None:
        if not self._permissions.signs_urls:
            raise gexc.Forbidden(
                f"{self._deployable} may not sign a URL for '{path}': runtune/permissions.py does not let it "
                "sign (iam.serviceAccounts.signBlob)"
            )

    def upload_bytes(self, path: str, data: bytes, *, content_type: str = "application/octet-stream") -> None:
        self._check(path, "w")
        self._inner.upload_bytes(path, data, content_type=content_type)

    def upload_stream(self, path: str, stream: BinaryIO, *, content_type: str = "application/octet-stream") -> None:
        self._check(path, "w")
        self._inner.upload_stream(path, stream, content_type=content_type)

    def upload_file(self, path: str, local_path: Path, *, content_type: str | None = None) -> None:
        self._check(path, "w")
        self._inner.upload_file(path, local_path, content_type=content_type)

    def download_bytes(self, path: str) -> bytes:
        self._check(path, "r")
        return self._inner.download_bytes(path)

    def download_file(self, path: str, local_path: Path) -> None:
        self._check(path, "r")
        self._inner.download_file(path, local_path)

    def iter_chunks(self, path: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        # Checked when called, not at the first chunk: the real client's 403 comes before any byte.
        self._check(path, "r")
        return self._inner.iter_chunks(path, chunk_size)

    def info(self, path: str) -> BlobInfo | None:
        self._check(path, "r")
        return self._inner.info(path)

    def list(self, prefix: str) -> list[BlobInfo]:
        self._check(prefix, "r")
        return self._inner.list(prefix)

    def delete(self, path: str) -> None:
        self._check(path, "d")
        self._inner.delete(path)

    def delete_prefix(self, prefix: str) -> int:
        self._check(prefix, "d")
        return self._inner.delete_prefix(prefix)

    def signed_download_url(self, path: str, *, expires: timedelta, filename: str | None = None) -> str:
        self._check(path, "r")
        self._check_signing(path)
        return self._inner.signed_download_url(path, expires=expires, filename=filename)

    def signed_upload_url(self, path: str, *, content_type: str, expires: timedelta) -> str:
        self._check(path, "w")
        self._check_signing(path)
        return self._inner.signed_upload_url(path, content_type=content_type, expires=expires)

    def resumable_upload_url(self, path: str, *, content_type: str, size: int | None, origin: str | None) -> str:
        # The session is opened with the service's own credentials: a write, no signature.
        self._check(path, "w")
        return self._inner.resumable_upload_url(path, content_type=content_type, size=size, origin=origin)


class PermittedMetadataStore:
    def __init__(self, inner: MetadataStore, deployable: str) -> None:
        self._inner = inner
        self._deployable = deployable
        self._permissions = permissions.of(deployable)

    def _check(self, path: str, access: Literal["r", "w"]) -> None:
        if not self._permissions.allows_document(path, access):
            collection = permissions.collection_of(path)
            raise gexc.PermissionDenied(
                f"{self._deployable} may not {_VERBS[access]} '{path}' (collection '{collection}'): "
                f"runtune/permissions.py grants it {_describe(self._permissions.firestore) or 'no Firestore access'}"
            )

    def get(self, path: str) -> Document | None:
        self._check(path, "r")
        return self._inner.get(path)

    def create(self, path: str, data: Document) -> None:
        self._check(path, "w")
        self._inner.create(path, data)

    def set(self, path: str, data: Document, *, merge: bool = False) -> None:
        self._check(path, "w")
        self._inner.set(path, data, merge=merge)

    def update(self, path: str, fields: Document) -> None:
        self._check(path, "w")
        self._inner.update(path, fields)

    def delete(self, path: str) -> None:
        self._check(path, "w")
        self._inner.delete(path)

    def delete_tree(self, path: str) -> None:
        # The subcollections go too: each must be writable (those the table names under this one).
        collection = permissions.collection_of(path)
        self._check(path, "w")
        for nested in self._permissions.firestore:
            if nested.startswith(collection + "/") and "w" not in self._permissions.firestore[nested]:
                self._check(f"{path}/{nested.removeprefix(collection + '/')}", "w")
        self._inner.delete_tree(path)

    def set_many(self, items: Sequence[tuple[str, Document]]) -> None:
        for path, _ in items:
            self._check(path, "w")
        self._inner.set_many(items)

    def create_many(self, items: Sequence[tuple[str, Document]]) -> None:
        for path, _ in items:
            self._check(path, "w")
        self._inner.create_many(items)

    def query(
        self,
        collection: str,
        *,
        where: Sequence[Where] = (),
        order_by: Sequence[OrderBy] = (),
        limit: int | None = None,
        start_after: str | None = None,
    ) -> list[tuple[str, Document]]:
        self._check(collection, "r")
        return self._inner.query(collection, where=where, order_by=order_by, limit=limit, start_after=start_after)

    def transact(
        self,
        path: str,
        mutate: Callable[[Document | None], Document | None],
        *,
        also: AlsoWrite | None = None,
    ) -> Document | None:
        self._check(path, "r")
        self._check(path, "w")
        if also is None:
            return self._inner.transact(path, mutate)

        def checked(before: Document | None, after: Document) -> Sequence[tuple[str, Document]]:
            writes = also(before, after)
            for extra_path, _ in writes:
                self._check(extra_path, "w")
            return writes

        return self._inner.transact(path, mutate, also=checked)


class PermittedSecretStore:
    """Users' secrets: `user_secrets = "read"` may get one; "manage" may do everything."""

    def __init__(self, inner: SecretStore, deployable: str) -> None:
        self._inner = inner
        self._deployable = deployable
        self._use = permissions.of(deployable).user_secrets

    def _check(self, action: str) -> None:
        allowed = self._use == "manage" or (self._use == "read" and action == "get")
        if not allowed:
            # As SecretManagerStore answers a PERMISSION_DENIED: logged with its cause, a 503 to the caller.
            log.error(
                "secret manager call refused",
                extra={"action": action, "deployable": self._deployable, "user_secrets": self._use},
            )
            raise UpstreamUnavailable("The secret store is unavailable")

    def put(self, uid: str, name: str, value: str) -> None:
        self._check("put")
        self._inner.put(uid, name, value)

    def get(self, uid: str, name: str) -> str | None:
        self._check("get")
        return self._inner.get(uid, name)

    def delete(self, uid: str, name: str) -> None:
        self._check("delete")
        self._inner.delete(uid, name)

    def names(self, uid: str) -> list[str]:
        self._check("list")
        return self._inner.names(uid)


def _describe(grants: Mapping[str, str]) -> str:
    return ", ".join(f"{where} ({access})" for where, access in grants.items())
