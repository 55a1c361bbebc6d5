"""Resources that belong to one user, in the metadata store: every read goes through the owner.

A foreign resource is as missing as a nonexistent one (the same 404), so ids cannot be probed; a
string that is no id of the platform's (`is_resource_id`: paths, `..`, Firestore's reserved `__x__`)
never reaches the store, and is the same 404.

Every owned collection is an `OwnedCollection` (the factories below, `runtune.api_keys.api_keys`, and
the inference service's evaluations, vibe checks and exports); a job's model checkpoints carry no owner
of their own and are reached through their job (`JobCheckpoints`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from runtune.errors import not_found
from runtune.outbox import on_transition
from runtune.ports.metadata import AlsoWrite, MetadataStore, OrderBy, Where
from runtune.schemas.common import OwnedResource, is_resource_id
from runtune.schemas.datasets import Dataset, Upload
from runtune.schemas.jobs import Checkpoint, Job, job_path, model_checkpoint_path

R = TypeVar("R", bound=OwnedResource)
# Rows read per query while `list_owned` filters (`keep`): filters on users' own keys (a job's
# metadata) run here, since Firestore would need a composite index per key.
_SCAN_PAGE = 100


class OwnedCollection(Generic[R]):
    def __init__(
        self, store: MetadataStore, collection: str, model: type[R], kind: str, *, also: AlsoWrite | None = None
    ) -> None:
        """`also`: what `update_if` writes with each change (the webhook events of its transitions)."""
        self._store, self._collection, self._model, self._kind = store, collection, model, kind
        self._also = also

    @property
    def store(self) -> MetadataStore:
        """The store underneath, for queries across a user's collections (runtune/quotas.py)."""
        return self._store

    def path(self, resource_id: str) -> str:
        return f"{self._collection}/{resource_id}"

    def create(self, resource: R) -> None:
        self._store.create(self.path(resource.id), resource.to_document())

    def save(self, resource: R) -> None:
        self._store.set(self.path(resource.id), resource.to_document())

    def get(self, resource_id: str) -> R | None:
        """Whoever owns it: for the services' own bookkeeping, never for answering a caller."""
        document = self._store.get(self.path(resource_id)) if is_resource_id(resource_id) else None
        return self._model.model_validate(document) if document else None

    def where_equal(self, field: str, value: Any, *, limit: int | None = None) -> list[R]:
        """Whoever owns them, for the services' own bookkeeping (a single-field query: no index)."""
        rows = self._store.query(self._collection, where=[Where(field, "==", value)], limit=limit)
        return [self._model.model_validate(document) for _, document in rows]

    def few_owned(self, uid: str, most: int) -> list[R]:
        """A user's resources of a kind each user holds at most `most` of (API keys, webhook endpoints),
        newest first: a single-field equality (no composite index), `most + 1` read so that a caller
        can tell one too many."""
        found = self.where_equal("owner", uid, limit=most + 1)
        return sorted(found, key=lambda resource: (resource.created_at, resource.id), reverse=True)

    def where_in(self, field: str, values: list[Any], *, owner: str | None = None) -> list[R]:
        """Those whose `field` is one of `values` (of one owner, or whoever owns them), oldest first."""
        where = [Where(field, "in", values)]
        if owner is not None:
            where.append(Where("owner", "==", owner))
        rows = self._store.query(self._collection, where=where, order_by=[OrderBy("created_at")])
        return [self._model.model_validate(document) for _, document in rows]

    def find_owned(self, uid: str, resource_id: str) -> R | None:
        resource = self.get(resource_id)
        return resource if resource is not None and resource.owner == uid else None

    def get_owned(self, uid: str, resource_id: str, kind: str | None = None) -> R:
        """The resource if the caller owns it; `kind` names it in the 404 (a dataset seen as a file)."""
        resource = self.find_owned(uid, resource_id)
        if resource is None:
            raise not_found(kind or self._kind, resource_id)
        return resource

    def update(self, resource_id: str, fields: dict[str, Any]) -> None:
        """Raises NotFound when the document was deleted meanwhile."""
        self._store.update(self.path(resource_id), fields)

    def update_if(self, resource_id: str, mutate: Callable[[R], R | None]) -> R | None:
        """Change a resource atomically (another process writes it too); `mutate` returning None
        changes nothing. Returns the stored result, or None when nothing was written."""

        def apply(document: dict[str, Any] | None) -> dict[str, Any] | None:
            changed = mutate(self._model.model_validate(document)) if document is not None else None
            return changed.to_document() if changed is not None else None

        result = self._store.transact(self.path(resource_id), apply, also=self._also)
        return self._model.model_validate(result) if result else None

    def delete(self, resource_id: str) -> None:
        self._store.delete(self.path(resource_id))

    def list_owned(
        self,
        uid: str,
        *,
        limit: int,
        after: str | None,
        kind: str | None = None,
        keep: Callable[[R], bool] | None = None,
    ) -> list[R]:
        """The caller's resources, newest first, after the cursor `after`; with `keep`, only those it
        keeps (read page by page until `limit` are kept or none are left)."""
        if after is not None:
            self.get_owned(uid, after, kind)  # a foreign or unknown cursor is a 404, not an empty page
        found: list[R] = []
        cursor = after
        while len(found) < limit:
            page = limit - len(found) if keep is None else _SCAN_PAGE
            rows = self._store.query(
                self._collection,
                where=[Where("owner", "==", uid)],
                order_by=[OrderBy("created_at", descending=True)],
                limit=page,
                start_after=cursor,
            )
            resources = [self._model.model_validate(document) for _, document in rows]
            found += resources if keep is None else [resource for resource in resources if keep(resource)]
            if keep is None or len(rows) < page:
                break
            cursor = rows[-1][0]
        return found[:limit]


def datasets(store: MetadataStore) -> OwnedCollection[Dataset]:
    """The datasets (and files: the same documents): written by preprocessing, read by the other services."""
    return OwnedCollection(store, "datasets", Dataset, "dataset", also=on_transition("dataset"))


def uploads(store: MetadataStore) -> OwnedCollection[Upload]:
    """Uploads in progress (preprocessing's own)."""
    return OwnedCollection(store, "uploads", Upload, "upload")


def jobs(store: MetadataStore) -> OwnedCollection[Job]:
    """Fine-tuning jobs: written by the training service and by their trainer (atomically: `update_if`)."""
    return OwnedCollection(store, "jobs", Job, "fine-tuning job", also=on_transition("job"))


@dataclass(frozen=True)
class StoredCheckpoint:
    """A model checkpoint's document: the OpenAI checkpoint and the folder of its adapter (never shown)."""

    checkpoint: Checkpoint
    adapter: str | None


class JobCheckpoints:
    """A job's model checkpoints (`jobs/{job}/model_checkpoints/{step}`, runtune.training.model_checkpoints).
    Their documents carry no owner: they are the job's, so a caller answering a user passes the id of a
    job it got through `jobs(store).get_owned` (the trainer, its own job's)."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    def save(self, stored: StoredCheckpoint) -> None:
        checkpoint = stored.checkpoint
        document = checkpoint.model_dump(mode="json", exclude={"best"}) | {"adapter": stored.adapter}
        self._store.set(model_checkpoint_path(checkpoint.fine_tuning_job_id, checkpoint.step_number), document)

    def get(self, job_id: str, step: int) -> StoredCheckpoint | None:
        document = self._store.get(model_checkpoint_path(job_id, step))
        return _stored(document) if document is not None else None

    def list(self, job_id: str) -> list[StoredCheckpoint]:
        """Oldest first; the resume states (`jobs/{id}/checkpoints`) are the trainer's own and never listed."""
        rows = self._store.query(f"{job_path(job_id)}/model_checkpoints", order_by=[OrderBy("step_number")])
        return [_stored(document) for _, document in rows]

    def delete(self, job_id: str, step: int) -> None:
        self._store.delete(model_checkpoint_path(job_id, step))


def _stored(document: dict[str, Any]) -> StoredCheckpoint:
    adapter = document.get("adapter")
    checkpoint = Checkpoint.model_validate({k: v for k, v in document.items() if k != "adapter"})
    return StoredCheckpoint(checkpoint, adapter if isinstance(adapter, str) else None)
