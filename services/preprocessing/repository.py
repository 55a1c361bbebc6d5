"""Uploads in the metadata store, and the blob paths of uploads and datasets. (Datasets are
`runtune.owned.datasets`: the other services read them too.)"""

from __future__ import annotations

from runtune.datasets.canonical import safe_filename, source_path
from runtune.owned import OwnedCollection
from runtune.ports.metadata import MetadataStore
from runtune.schemas.datasets import Upload

__all__ = ["safe_filename", "source_path", "upload_collection", "upload_folder", "upload_prefix"]


def upload_prefix(uid: str, upload_id: str) -> str:
    """Top-level `uploads/`: the bucket's lifecycle rule deletes what is under it (a GCS rule's prefix
    cannot wildcard the uid). Ownership is the upload document's `owner`; the path is never a client's."""
    return f"uploads/{uid}/{upload_id}/"


def upload_folder(upload: Upload) -> str:
    """The folder of an upload's object, whichever layout it was made with (`users/{uid}/uploads/` before)."""
    return upload.object_path.rsplit("/", 1)[0] + "/"


def upload_collection(store: MetadataStore) -> OwnedCollection[Upload]:
    return OwnedCollection(store, "uploads", Upload, "upload")
