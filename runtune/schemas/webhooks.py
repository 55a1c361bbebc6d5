"""Webhook endpoints and their delivery attempts as the REST API shows them (`/v1/webhooks`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from runtune.schemas.common import ApiModel, OwnedResource

# Each kind of resource: the statuses whose arrival is an event, and the event's type.
TRANSITIONS: dict[str, dict[str, str]] = {
    "job": {
        "succeeded": "fine_tuning.job.succeeded",
        "failed": "fine_tuning.job.failed",
        "cancelled": "fine_tuning.job.cancelled",
    },
    "dataset": {"ready": "dataset.ready", "failed": "dataset.failed"},
    "evaluation": {"succeeded": "evaluation.succeeded", "failed": "evaluation.failed"},
    "export": {"succeeded": "export.succeeded"},
}
Kind = Literal["job", "dataset", "evaluation", "export"]
# What an endpoint may subscribe to (all of them when it names none); `webhook.test` is sent by
# `POST /v1/webhooks/{id}/test` to that endpoint only, whatever it subscribes to.
EVENT_TYPES: tuple[str, ...] = tuple(t for types in TRANSITIONS.values() for t in types.values())
TEST_EVENT = "webhook.test"

EndpointStatus = Literal["enabled", "disabled"]


class WebhookEndpoint(OwnedResource):
    """One receiver of the owner's events. Its signing secret is not a field: it lives in the secret
    store (`runtune/webhooks/endpoints.py`), never in this document."""

    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    url: str
    events: list[str]  # empty: every event type
    description: str | None = None
    status: EndpointStatus = "enabled"
    # Set when deliveries kept failing for the whole retry window; a disabled endpoint gets nothing.
    disabled_at: int | None = None
    disabled_reason: str | None = None

    def wants(self, event_type: str) -> bool:
        return self.status == "enabled" and (not self.events or event_type in self.events)


class CreatedWebhookEndpoint(WebhookEndpoint):
    """The create answer: the only place the signing secret ever appears."""

    secret: str


class CreateWebhookRequest(ApiModel):
    url: str = Field(min_length=1, max_length=2048, description="Where events are POSTed (https in the cloud)")
    events: list[str] = Field(default_factory=list, max_length=len(EVENT_TYPES), description="All when omitted")
    description: str | None = Field(default=None, max_length=500)

    @field_validator("events")
    @classmethod
    def _known_events(cls, events: list[str]) -> list[str]:
        unknown = [event for event in events if event not in EVENT_TYPES]
        if unknown:
            raise ValueError(f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}")
        return sorted(set(events))


class EventSubject(ApiModel):
    """What an event is about: the resource's id (the job, dataset, ... whose status moved)."""

    id: str


class WebhookEvent(ApiModel):
    """The event a receiver gets (`runtune.outbox.envelope`), OpenAI's event object; what
    `POST /v1/webhooks/{id}/test` sends."""

    id: str
    object: Literal["event"] = "event"
    type: str
    created_at: int
    data: EventSubject


class WebhookDelivery(ApiModel):
    """One attempt to deliver one event to one endpoint."""

    object: Literal["webhook_delivery"] = "webhook_delivery"
    id: str
    event_id: str
    event_type: str
    attempt: int  # 1 for the first try of this event at this endpoint
    attempted_at: float
    status_code: int | None = None  # None: no answer (refused address, connection error, timeout)
    latency_ms: float | None = None
    error: str | None = None
    succeeded: bool
    # When the queue tries again (its backoff, estimated from its retry settings); None: no retry.
    next_retry_at: float | None = None
