"""Evaluations, exports and vibe checks in the metadata store, always read through their owner."""

from __future__ import annotations

from typing import Generic, TypeVar

from runtune.errors import not_found
from runtune.ports.metadata import MetadataStore, OrderBy, Where
from runtune.schemas.common import OwnedResource

R = TypeVar("R", bound=OwnedResource)


def plausible_id(value: str) -> bool:
    # Firestore ids cannot contain '/', and a path-like id must not address another document.
    return bool(value) and "/" not in value and len(value) <= 128


class OwnedCollection(Generic[R]):
    def __init__(self, store: MetadataStore, collection: str, model: type[R], kind: str) -> None:
        self._store, self._collection, self._model, self._kind = store, collection, model, kind

    def path(self, resource_id: str) -> str:
        return f"{self._collection}/{resource_id}"

    def create(self, resource: R) -> None:
        self._store.create(self.path(resource.id), resource.to_document())

    def save(self, resource: R) -> None:
        self._store.set(self.path(resource.id), resource.to_document())

    def get_owned(self, uid: str, resource_id: str) -> R:
        """The resource if the caller owns it; a foreign one is as missing as a nonexistent one."""
        document = self._store.get(self.path(resource_id)) if plausible_id(resource_id) else None
        if document is None or document.get("owner") != uid:
            raise not_found(self._kind, resource_id)
        return self._model.model_validate(document)

    def list_owned(self, uid: str, *, limit: int, after: str | None) -> list[R]:
        if after is not None:
            self.get_owned(uid, after)  # a foreign or unknown cursor is a 404, not an empty page
        rows = self._store.query(
            self._collection,
            where=[Where("owner", "==", uid)],
            order_by=[OrderBy("created_at", descending=True)],
            limit=limit,
            start_after=after,
        )
        return [self._model.model_validate(document) for _, document in rows]
