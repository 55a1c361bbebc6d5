"""Firestore adapter of the metadata port (the emulator locally, the real database in the cloud)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from google.api_core import exceptions as gexc
from google.cloud import firestore
from google.cloud.firestore_v1.base_query import FieldFilter

from runtune.errors import Conflict, InvalidRequest, NotFound
from runtune.indexes import CompositeIndex, QueryShape, shape_of, uncovered
from runtune.ports.metadata import AlsoWrite, Document, OrderBy, Where

# Firestore accepts at most 500 writes in one batch.
_BATCH_LIMIT = 500
_TRANSACTION_ATTEMPTS = 20
_MAX_ID_BYTES = 1500


def reserved_segment(path: str) -> str | None:
    """The first segment of `path` that Firestore reserves or refuses as an id ('.', '..', `__x__`,
    empty, over 1500 bytes), else None. The services refuse such ids at their edge already
    (`is_resource_id`); this holds for every other path too, so none is ever read or written."""
    for segment in path.split("/"):
        reserved = segment in ("", ".", "..") or (len(segment) >= 4 and segment[:2] == segment[-2:] == "__")
        if reserved or len(segment.encode()) > _MAX_ID_BYTES:
            return segment
    return None


class FirestoreMetadataStore:
    """`enforce_indexes`: the declared composite indexes (the local profile passes
    `runtune.indexes.COMPOSITE_INDEXES`); a query none serves raises FAILED_PRECONDITION before it
    reaches the emulator, which serves any query, as real Firestore would. `query_log`: a JSONL file
    each distinct query shape is appended to once per process (the e2e index-coverage test reads it)."""

    def __init__(
        self,
        client: firestore.Client,
        *,
        enforce_indexes: Sequence[CompositeIndex] | None = None,
        query_log: Path | None = None,
    ) -> None:
        self._db = client
        self._indexes = enforce_indexes
        self._query_log = query_log
        self._lock = threading.Lock()
        # Distinct shapes only: a service runs a handful, so this stays small however long it lives.
        self.query_shapes: set[QueryShape] = set()

    @classmethod
    def for_project(
        cls,
        project_id: str,
        *,
        enforce_indexes: Sequence[CompositeIndex] | None = None,
        query_log: Path | None = None,
    ) -> FirestoreMetadataStore:
        # FIRESTORE_EMULATOR_HOST, when set (local profile only), is honoured by the client itself.
        return cls(firestore.Client(project=project_id), enforce_indexes=enforce_indexes, query_log=query_log)

    def _check_query(self, collection: str, where: Sequence[Where], order_by: Sequence[OrderBy]) -> None:
        shape = shape_of(collection, ((w.field, w.op) for w in where), ((o.field, o.descending) for o in order_by))
        with self._lock:
            new = shape not in self.query_shapes
            self.query_shapes.add(shape)
            if new and self._query_log is not None:
                with self._query_log.open("a") as log:
                    log.write(shape.to_json() + "\n")
        if self._indexes is not None and (reason := uncovered(shape, self._indexes)):
            raise gexc.FailedPrecondition(f"The query requires an index: {reason} (declare it in runtune/indexes.py)")

    def _document(self, path: str) -> firestore.DocumentReference:
        if (segment := reserved_segment(path)) is not None:
            raise InvalidRequest(f"'{segment[:200]}' is not a valid id", code="invalid_id")
        return self._db.document(path)

    def get(self, path: str) -> Document | None:
        if reserved_segment(path) is not None:
            return None  # no such document can exist
        snapshot = self._db.document(path).get()
        return snapshot.to_dict() if snapshot.exists else None

    def create(self, path: str, data: Document) -> None:
        try:
            self._document(path).create(data)
        except gexc.AlreadyExists as exc:
            raise Conflict(f"'{path}' already exists") from exc

    def set(self, path: str, data: Document, *, merge: bool = False) -> None:
        self._document(path).set(data, merge=merge)

    def update(self, path: str, fields: Document) -> None:
        try:
            self._document(path).update(fields)
        except gexc.NotFound as exc:
            raise NotFound(f"'{path}' does not exist") from exc

    def delete(self, path: str) -> None:
        self._document(path).delete()

    def delete_tree(self, path: str) -> None:
        self._db.recursive_delete(self._document(path))

    def set_many(self, items: Sequence[tuple[str, Document]]) -> None:
        for start in range(0, len(items), _BATCH_LIMIT):
            batch = self._db.batch()
            for path, data in items[start : start + _BATCH_LIMIT]:
                batch.set(self._document(path), data)
            batch.commit()

    def create_many(self, items: Sequence[tuple[str, Document]]) -> None:
        if len(items) > _BATCH_LIMIT:
            raise ValueError(f"at most {_BATCH_LIMIT} documents can be created atomically")
        batch = self._db.batch()
        for path, data in items:
            batch.create(self._document(path), data)
        try:
            batch.commit()
        except gexc.AlreadyExists as exc:
            raise Conflict("a document of the batch already exists") from exc

    def query(
        self,
        collection: str,
        *,
        where: Sequence[Where] = (),
        order_by: Sequence[OrderBy] = (),
        limit: int | None = None,
        start_after: str | None = None,
    ) -> list[tuple[str, Document]]:
        self._check_query(collection, where, order_by)
        ref = self._db.collection(collection)
        query: firestore.Query | firestore.CollectionReference = ref
        for clause in where:
            query = query.where(filter=FieldFilter(clause.field, clause.op, clause.value))
        for order in order_by:
            direction = firestore.Query.DESCENDING if order.descending else firestore.Query.ASCENDING
            query = query.order_by(order.field, direction=direction)
        if start_after is not None:
            if reserved_segment(start_after) is not None:
                return []  # as for any cursor that names no document
            cursor = ref.document(start_after).get()
            if not cursor.exists:
                return []
            query = query.start_after(cursor)
        if limit is not None:
            query = query.limit(limit)
        return [(snap.id, snap.to_dict() or {}) for snap in query.stream()]

    def transact(
        self,
        path: str,
        mutate: Callable[[Document | None], Document | None],
        *,
        also: AlsoWrite | None = None,
    ) -> Document | None:
        ref = self._document(path)

        @firestore.transactional
        def run(transaction: firestore.Transaction) -> Document | None:
            snapshot = ref.get(transaction=transaction)
            before = snapshot.to_dict() if snapshot.exists else None
            result = mutate(before)
            if result is not None:
                transaction.set(ref, result)
                for extra_path, extra in also(before, result) if also is not None else ():
                    transaction.set(self._document(extra_path), extra)
            return result

        # Contended documents (a job its trainer and the API both touch) retry more than the default 5.
        return run(self._db.transaction(max_attempts=_TRANSACTION_ATTEMPTS))
