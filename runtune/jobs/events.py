"""A job's event log, written by the training service and the trainer alike.

Events are numbered per job from a counter document, taken in blocks inside a transaction, so any
number of writers append without colliding and readers see one gap-free order: `seq` is what
pagination's `after` and Server-Sent Events' `Last-Event-ID` resume from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from runtune.ports.metadata import Document, MetadataStore, OrderBy, Where
from runtune.schemas.common import now_ts
from runtune.schemas.jobs import JobEvent, event_id, event_path, job_path

Level = Literal["info", "warn", "error"]


@dataclass(frozen=True)
class NewEvent:
    message: str
    level: Level = "info"
    type: Literal["message", "metrics"] = "message"
    data: dict[str, Any] | None = field(default=None)


class JobEventLog:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    def append(self, job_id: str, events: Sequence[NewEvent]) -> list[JobEvent]:
        if not events:
            return []
        first = self._reserve(job_id, len(events))
        created = now_ts()
        written = [
            JobEvent(
                id=event_id(job_id, first + offset),
                created_at=created,
                level=event.level,
                message=event.message,
                type=event.type,
                data=event.data,
                seq=first + offset,
            )
            for offset, event in enumerate(events)
        ]
        self._store.set_many([(event_path(job_id, e.seq), e.model_dump(mode="json") | {"seq": e.seq}) for e in written])
        return written

    def add(self, job_id: str, message: str, *, level: Level = "info") -> JobEvent:
        return self.append(job_id, [NewEvent(message, level)])[0]

    def read(
        self, job_id: str, *, after_seq: int | None = None, limit: int | None = None, newest_first: bool = False
    ) -> list[JobEvent]:
        """Events in order (oldest first, or newest first as OpenAI lists them); `after_seq` is the
        exclusive cursor in that order."""
        where = []
        if after_seq is not None:
            where.append(Where("seq", "<" if newest_first else ">", after_seq))
        rows = self._store.query(
            f"{job_path(job_id)}/events",
            where=where,
            order_by=[OrderBy("seq", descending=newest_first)],
            limit=limit,
        )
        return [JobEvent.model_validate(document) for _, document in rows]

    def _reserve(self, job_id: str, count: int) -> int:
        taken: dict[str, int] = {}

        def bump(document: Document | None) -> Document:
            start = int((document or {}).get("next", 0))
            taken["start"] = start
            return {"next": start + count}

        self._store.transact(f"{job_path(job_id)}/counters/events", bump)
        return taken["start"]
