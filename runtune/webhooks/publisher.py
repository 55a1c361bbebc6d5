"""The outbox's sweep: every committed event not yet handed to the queue gets one task per endpoint
of its owner that wants it, then is marked enqueued.

It runs in the training service's reconcile pass (the one instance kept running with CPU, see
docs/architecture.md), so an event whose writer died right after its commit is enqueued at the next
pass, whoever wrote it: the trainer, the ingest job, an evaluation, any service. A sweep that dies
between the enqueue and the mark enqueues again: delivery is at least once, and the dispatcher skips
an endpoint the event already reached.
"""

from __future__ import annotations

import logging

from runtune.outbox import OUTBOX, outbox_path
from runtune.owned import OwnedCollection
from runtune.ports.metadata import MetadataStore, Where
from runtune.ports.tasks import TaskQueue
from runtune.schemas.common import now_ts
from runtune.schemas.webhooks import TEST_EVENT, WebhookEndpoint
from runtune.webhooks.endpoints import endpoints, owned

log = logging.getLogger("runtune.webhooks")

_PAGE = 100


def task_name(event_id: str, endpoint_id: str) -> str:
    return f"{event_id}--{endpoint_id}"


class OutboxPublisher:
    def __init__(self, store: MetadataStore, queue: TaskQueue) -> None:
        self._store, self._queue = store, queue
        self._endpoints: OwnedCollection[WebhookEndpoint] = endpoints(store)

    def sweep(self) -> list[str]:
        """Enqueue every pending event (a page per pass); returns the ids of those enqueued."""
        rows = self._store.query(OUTBOX, where=[Where("enqueued", "==", False)], limit=_PAGE)
        done = []
        for event_id, entry in rows:
            try:
                self.publish(event_id, entry)
            except Exception:  # one event's failure (the queue unreachable) must not hold the others
                log.exception("webhook event not enqueued; the next sweep retries", extra={"event_id": event_id})
                continue
            done.append(event_id)
        return done

    def publish(self, event_id: str, entry: dict[str, object]) -> list[str]:
        """Enqueue one event for its endpoints and mark it; returns the endpoints' ids."""
        targets = [
            endpoint.id
            for endpoint in owned(self._endpoints, str(entry["owner"]))
            if (entry.get("endpoint_id") == endpoint.id and endpoint.status == "enabled")
            or (entry.get("endpoint_id") is None and entry["type"] != TEST_EVENT and endpoint.wants(str(entry["type"])))
        ]
        for endpoint_id in targets:
            self._queue.enqueue(task_name(event_id, endpoint_id), {"event_id": event_id, "endpoint_id": endpoint_id})
        self._store.update(outbox_path(event_id), {"enqueued": True, "enqueued_at": now_ts(), "endpoints": targets})
        if targets:
            log.info("webhook event enqueued", extra={"event_id": event_id, "endpoints": len(targets)})
        return targets
