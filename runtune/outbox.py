"""The outbox: the events webhooks carry (their types are `runtune.schemas.webhooks`'), written with the
transition they report.

An event is OpenAI's envelope, `{"id": "evt_...", "object": "event", "type": ..., "created_at": ...,
"data": {"id": ...}}`. It is written to `webhook_outbox/{event_id}` in the same Firestore transaction
(or batch) as the state change it reports, so it exists exactly when the change does: a process that
dies right after the commit loses nothing, and the training service's sweep
(`runtune/webhooks/publisher.py`) enqueues every entry not yet enqueued.

The id is derived from the resource and the type (`evt_` + 24 hex digits of a SHA-256): a transition
retried by Firestore, or re-run after a crash, writes the same entry again, never a second event, and
receivers de-duplicating on `webhook-id` see one event per transition.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from runtune.ports.metadata import AlsoWrite, Document
from runtune.schemas.common import now_ts
from runtune.schemas.webhooks import TRANSITIONS, Kind

OUTBOX = "webhook_outbox"


def event_id(event_type: str, resource_id: str) -> str:
    return "evt_" + hashlib.sha256(f"{event_type}\n{resource_id}".encode()).hexdigest()[:24]


def outbox_path(evt_id: str) -> str:
    return f"{OUTBOX}/{evt_id}"


def outbox_entry(
    event_type: str, resource_id: str, owner: str, *, evt_id: str | None = None, endpoint_id: str | None = None
) -> tuple[str, Document]:
    """The outbox document of one event: its envelope, its owner (whose endpoints receive it), and
    `enqueued` (false until the sweep has handed it to the queue). `endpoint_id`: only that endpoint."""
    evt_id = evt_id or event_id(event_type, resource_id)
    entry: Document = {
        "id": evt_id,
        "object": "event",
        "type": event_type,
        "created_at": now_ts(),
        "data": {"id": resource_id},
        "owner": owner,
        "endpoint_id": endpoint_id,
        "enqueued": False,
        "delivered_to": [],
    }
    return outbox_path(evt_id), entry


def envelope(entry: Document) -> dict[str, Any]:
    """What a receiver gets: OpenAI's event object, nothing of the outbox's bookkeeping."""
    return {key: entry[key] for key in ("id", "object", "type", "created_at", "data")}


def on_transition(kind: Kind) -> AlsoWrite:
    """The `also` of a `MetadataStore.transact` on a resource of `kind`: its outbox entry when the
    transaction moves the resource into a status that is an event, nothing otherwise."""
    types = TRANSITIONS[kind]

    def entries(before: Document | None, after: Document) -> Sequence[tuple[str, Document]]:
        status = after.get("status")
        if status not in types or (before is not None and before.get("status") == status):
            return ()
        return (outbox_entry(types[status], after["id"], after["owner"]),)

    return entries


def event_for(kind: Kind, status: str, resource_id: str, owner: str) -> tuple[str, Document] | None:
    """The outbox entry of a resource created already in an event's status (an export)."""
    event_type = TRANSITIONS[kind].get(status)
    return outbox_entry(event_type, resource_id, owner) if event_type else None
