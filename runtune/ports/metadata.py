"""Metadata port: documents addressed by slash paths (`jobs/{id}/events/{seq}`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Document = dict[str, Any]
# Further documents a transaction writes with the one it changes, from (before, after): the webhooks
# outbox entry of a state transition (runtune/outbox.py), committed or lost with it.
AlsoWrite = Callable[[Document | None, Document], Sequence[tuple[str, Document]]]
Operator = Literal["==", "!=", "<", "<=", ">", ">=", "in", "array-contains"]


@dataclass(frozen=True)
class Where:
    field: str
    op: Operator
    value: Any


@dataclass(frozen=True)
class OrderBy:
    field: str
    descending: bool = False


class MetadataStore(Protocol):
    def get(self, path: str) -> Document | None: ...

    def create(self, path: str, data: Document) -> None:
        """Write a new document; raises `runtune.errors.Conflict` if it exists."""

    def set(self, path: str, data: Document, *, merge: bool = False) -> None: ...

    def update(self, path: str, fields: Document) -> None:
        """Change some fields; raises `runtune.errors.NotFound` if the document is missing."""

    def delete(self, path: str) -> None: ...

    def delete_tree(self, path: str) -> None:
        """Delete a document and every document in its subcollections."""

    def set_many(self, items: Sequence[tuple[str, Document]]) -> None:
        """Write many documents in as few batches as the backend allows."""

    def create_many(self, items: Sequence[tuple[str, Document]]) -> None:
        """Create up to 500 new documents atomically; raises `Conflict` (writing none) if any exists."""

    def query(
        self,
        collection: str,
        *,
        where: Sequence[Where] = (),
        order_by: Sequence[OrderBy] = (),
        limit: int | None = None,
        start_after: str | None = None,
    ) -> list[tuple[str, Document]]:
        """Documents of one collection as (id, data); `start_after` is a document id of it."""

    def transact(
        self,
        path: str,
        mutate: Callable[[Document | None], Document | None],
        *,
        also: AlsoWrite | None = None,
    ) -> Document | None:
        """Read-modify-write one document atomically; `mutate` may run more than once.

        Returns what `mutate` returned (written when not None). When it writes, `also(before, after)`
        names further documents set in the same transaction.
        """
