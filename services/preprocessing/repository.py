"""Uploads in the metadata store, and the blob paths of uploads and datasets. (Datasets are
`runtune.owned.datasets`: the other services read them too.)"""

from __future__ import annotations

import re

from runtune.datasets.canonical import dataset_prefix
from runtune.owned import OwnedCollection
from runtune.ports.metadata import MetadataStore
from runtune.schemas.datasets import Upload

_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(filename: str) -> str:
    """The last path component with only safe characters: names never address other objects."""
    name = _UNSAFE_NAME.sub("_", filename.replace("\\", "/").rsplit("/", 1)[-1]).strip("._") or "upload"
    return name[-150:]


def upload_prefix(uid: str, upload_id: str) -> str:
    """Top-level `uploads/`: the bucket's lifecycle rule deletes what is under it (a GCS rule's prefix
    cannot wildcard the uid). Ownership is the upload document's `owner`; the path is never a client's."""
    return f"uploads/{uid}/{upload_id}/"


def upload_folder(upload: Upload) -> str:
    """The folder of an upload's object, whichever layout it was made with (`users/{uid}/uploads/` before)."""
    return upload.object_path.rsplit("/", 1)[0] + "/"


def source_path(uid: str, dataset_id: str, filename: str) -> str:
    """Where a file sent to /v1/files is kept (inside the dataset's prefix, so delete removes it)."""
    return f"{dataset_prefix(uid, dataset_id)}source/{safe_filename(filename)}"


def upload_collection(store: MetadataStore) -> OwnedCollection[Upload]:
    return OwnedCollection(store, "uploads", Upload, "upload")
