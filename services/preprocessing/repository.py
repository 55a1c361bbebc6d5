"""Datasets and uploads in the metadata store, always read through their owner, and their blob paths."""

from __future__ import annotations

import re
from typing import Any

from runtune.datasets.canonical import dataset_prefix
from runtune.errors import not_found
from runtune.ports.metadata import MetadataStore, OrderBy, Where
from runtune.schemas.datasets import Dataset, Upload

DATASETS = "datasets"
UPLOADS = "uploads"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def _plausible_id(resource_id: str) -> bool:
    # Firestore ids cannot contain '/', and a path-like id must not address another document.
    return bool(resource_id) and "/" not in resource_id and len(resource_id) <= 128


def safe_filename(filename: str) -> str:
    """The last path component with only safe characters: names never address other objects."""
    name = _UNSAFE_NAME.sub("_", filename.replace("\\", "/").rsplit("/", 1)[-1]).strip("._") or "upload"
    return name[-150:]


def upload_prefix(uid: str, upload_id: str) -> str:
    return f"users/{uid}/uploads/{upload_id}/"


def source_path(uid: str, dataset_id: str, filename: str) -> str:
    """Where a file sent to /v1/files is kept (inside the dataset's prefix, so delete removes it)."""
    return f"{dataset_prefix(uid, dataset_id)}source/{safe_filename(filename)}"


class DatasetRepository:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    def create(self, dataset: Dataset) -> None:
        self._store.create(f"{DATASETS}/{dataset.id}", dataset.to_document())

    def get(self, dataset_id: str) -> Dataset | None:
        document = self._store.get(f"{DATASETS}/{dataset_id}") if _plausible_id(dataset_id) else None
        return Dataset.model_validate(document) if document else None

    def get_owned(self, uid: str, dataset_id: str, kind: str = "dataset") -> Dataset:
        """The dataset if the caller owns it; a foreign one is as missing as a nonexistent one."""
        dataset = self.get(dataset_id)
        if dataset is None or dataset.owner != uid:
            raise not_found(kind, dataset_id)
        return dataset

    def update(self, dataset_id: str, fields: dict[str, Any]) -> None:
        """Raises NotFound when the dataset was deleted meanwhile (the worker then cleans up)."""
        self._store.update(f"{DATASETS}/{dataset_id}", fields)

    def delete(self, dataset_id: str) -> None:
        self._store.delete(f"{DATASETS}/{dataset_id}")

    def list_owned(self, uid: str, *, limit: int, after: str | None, kind: str = "dataset") -> list[Dataset]:
        if after is not None:
            self.get_owned(uid, after, kind)  # a foreign or unknown cursor is a 404, not an empty page
        rows = self._store.query(
            DATASETS,
            where=[Where("owner", "==", uid)],
            order_by=[OrderBy("created_at", descending=True)],
            limit=limit,
            start_after=after,
        )
        return [Dataset.model_validate(document) for _, document in rows]


class UploadRepository:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    def create(self, upload: Upload) -> None:
        self._store.create(f"{UPLOADS}/{upload.id}", upload.to_document())

    def get_owned(self, uid: str, upload_id: str) -> Upload:
        document = self._store.get(f"{UPLOADS}/{upload_id}") if _plausible_id(upload_id) else None
        if document is None or document.get("owner") != uid:
            raise not_found("upload", upload_id)
        return Upload.model_validate(document)

    def update(self, upload_id: str, fields: dict[str, Any]) -> None:
        self._store.update(f"{UPLOADS}/{upload_id}", fields)

    def delete(self, upload_id: str) -> None:
        self._store.delete(f"{UPLOADS}/{upload_id}")

    def list_owned(self, uid: str, *, limit: int, after: str | None) -> list[Upload]:
        if after is not None:
            self.get_owned(uid, after)
        rows = self._store.query(
            UPLOADS,
            where=[Where("owner", "==", uid)],
            order_by=[OrderBy("created_at", descending=True)],
            limit=limit,
            start_after=after,
        )
        return [Upload.model_validate(document) for _, document in rows]
