"""A job's event log, written by the training service and the trainer alike.

Events are numbered per job (`seq`), gap-free, in the order they were written: what pagination's
`after` and Server-Sent Events' `Last-Event-ID` resume from. No shared counter document is
involved (Firestore sustains about one write per second on a single document, and a trainer
writes metrics several times a second): a writer takes the numbers after the newest event and
*creates* its events in one atomic batch; if another writer took those numbers first, the batch
fails whole and the writer tries again with the next free ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from runtune.errors import Conflict
from runtune.ports.metadata import MetadataStore, OrderBy, Where
from runtune.schemas.common import now_ts
from runtune.schemas.jobs import JobEvent, event_id, event_path, job_path

Level = Literal["info", "warn", "error"]
# Firestore creates at most 500 documents in one atomic batch.
MAX_BATCH = 500
_ATTEMPTS = 20


@dataclass(frozen=True)
class NewEvent:
    message: str
    level: Level = "info"
    type: Literal["message", "metrics"] = "message"
    data: dict[str, Any] | None = field(default=None)


class JobEventLog:
    def __init__(self, store: MetadataStore) -> None:
        self._store = store
        # Where this writer expects the next free number (a guess: a conflict corrects it).
        self._next: dict[str, int] = {}

    def append(self, job_id: str, events: Sequence[NewEvent]) -> list[JobEvent]:
        written: list[JobEvent] = []
        for start in range(0, len(events), MAX_BATCH):
            written += self._append_batch(job_id, events[start : start + MAX_BATCH])
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

    def metrics(
        self, job_id: str, *, after_step: int | None = None, to_step: int | None = None, limit: int
    ) -> list[JobEvent]:
        """Metrics events in step order, steps in (`after_step`, `to_step`], at most `limit`: one range
        read on `data.step` (only metrics events have it; a single-field index serves it), however
        long the log is."""
        where = []
        if after_step is not None:
            where.append(Where("data.step", ">", after_step))
        if to_step is not None:
            where.append(Where("data.step", "<=", to_step))
        rows = self._store.query(
            f"{job_path(job_id)}/events", where=where, order_by=[OrderBy("data.step")], limit=limit
        )
        events = [JobEvent.model_validate(document) for _, document in rows]
        return [event for event in events if event.type == "metrics"]

    def _append_batch(self, job_id: str, events: Sequence[NewEvent]) -> list[JobEvent]:
        if not events:
            return []
        first = self._next.get(job_id)
        for _ in range(_ATTEMPTS):
            if first is None:
                newest = self.read(job_id, limit=1, newest_first=True)
                first = newest[0].seq + 1 if newest else 0
            batch = self._numbered(job_id, events, first)
            try:
                self._store.create_many(
                    [(event_path(job_id, e.seq), e.model_dump(mode="json") | {"seq": e.seq}) for e in batch]
                )
            except Conflict:
                first = None  # another writer took these numbers: look again
                continue
            self._next[job_id] = first + len(batch)
            return batch
        raise Conflict(f"could not append events to job '{job_id}' after {_ATTEMPTS} attempts")

    @staticmethod
    def _numbered(job_id: str, events: Sequence[NewEvent], first: int) -> list[JobEvent]:
        created = now_ts()
        return [
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
