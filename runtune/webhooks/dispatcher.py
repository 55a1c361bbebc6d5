"""The dispatcher: one delivery attempt of one event to one endpoint, called by the queue.

Each attempt is signed afresh (receivers refuse a `webhook-timestamp` older than five minutes, and a
retry may come hours later), re-checks the endpoint's URL (DNS may have changed since registration)
and connects to the very address it checked (no second resolution between the check and the
connection), then records the attempt in the endpoint's delivery log.

Its answer steers the queue: 200 when the event is done with (delivered, or not to be delivered any
more), 503 when the queue should try again later. An endpoint still failing once the event is older
than the retry window (`webhook_retry_window_s`, 24 hours in the cloud) is disabled, and every later
event skips it.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from runtune.errors import InvalidRequest
from runtune.outbox import envelope, outbox_path
from runtune.owned import OwnedCollection
from runtune.ports.metadata import Document, MetadataStore, Where
from runtune.ports.secrets import SecretStore
from runtune.schemas.common import new_id, now_ts
from runtune.schemas.webhooks import WebhookDelivery, WebhookEndpoint
from runtune.webhooks.destinations import Destination, DestinationPolicy
from runtune.webhooks.endpoints import deliveries_path, endpoints, secret_name
from runtune.webhooks.signing import signed_headers

log = logging.getLogger("runtune.webhooks")

DONE, RETRY = 200, 503


@dataclass(frozen=True)
class RetryPolicy:
    """The queue's retry settings, as Terraform gives them to it: the dispatcher estimates the next
    attempt's time from them, and gives up (disabling the endpoint) after `window_s`."""

    window_s: float
    min_backoff_s: float
    max_backoff_s: float

    def next_retry_at(self, attempt: int, now: float) -> float:
        return now + min(self.max_backoff_s, self.min_backoff_s * 2 ** max(attempt - 1, 0))


class Dispatcher:
    def __init__(
        self,
        store: MetadataStore,
        secrets: SecretStore,
        policy: DestinationPolicy,
        retry: RetryPolicy,
        *,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store, self._secrets, self._policy, self._retry = store, secrets, policy, retry
        self._endpoints: OwnedCollection[WebhookEndpoint] = endpoints(store)
        self._timeout_s, self._clock = timeout_s, clock

    def deliver(self, event_id: str, endpoint_id: str) -> int:
        """One attempt; returns DONE or RETRY (the HTTP status the queue gets)."""
        endpoint = self._endpoints.get(endpoint_id)
        entry = self._store.get(outbox_path(event_id))
        if endpoint is None or entry is None or endpoint.status != "enabled" or entry["owner"] != endpoint.owner:
            return DONE  # deleted, disabled or not this endpoint's: nothing left to deliver
        if endpoint_id in entry.get("delivered_to", []):
            return DONE  # the queue delivered this task twice (at least once): the receiver has it
        secret = self._secrets.get(endpoint.owner, secret_name(endpoint_id))
        if secret is None:
            return DONE  # its secret went with the endpoint
        attempt = self._attempts(endpoint_id, event_id) + 1
        started = self._clock()
        status, error = self._post(endpoint, entry, secret)
        latency_ms = round((self._clock() - started) * 1000, 1)
        succeeded = status is not None and 200 <= status < 300
        give_up = not succeeded and self._clock() - float(entry["created_at"]) >= self._retry.window_s
        self._record(
            endpoint_id,
            WebhookDelivery(
                id=new_id("whdel"),
                event_id=event_id,
                event_type=str(entry["type"]),
                attempt=attempt,
                attempted_at=started,
                status_code=status,
                latency_ms=latency_ms,
                error=error,
                succeeded=succeeded,
                next_retry_at=None if succeeded or give_up else self._retry.next_retry_at(attempt, self._clock()),
            ),
        )
        log.info(
            "webhook attempt",
            extra={"event_id": event_id, "endpoint_id": endpoint_id, "status": status, "attempt": attempt},
        )
        if succeeded:
            self._store.transact(outbox_path(event_id), _add_delivered(endpoint_id))
            return DONE
        if give_up:
            self._disable(endpoint_id, f"Deliveries failed for {self._retry.window_s:.0f} s (last: {error or status})")
            return DONE
        return RETRY

    def _post(self, endpoint: WebhookEndpoint, entry: Document, secret: str) -> tuple[int | None, str | None]:
        try:
            destination = self._policy.check(endpoint.url)
        except InvalidRequest as exc:
            return None, exc.message
        body = json.dumps(envelope(entry), separators=(",", ":")).encode()
        headers = signed_headers(secret, str(entry["id"]), int(self._clock()), body)
        url, extensions = _pinned(destination)
        headers["host"] = _host_header(destination)
        try:
            with httpx.Client(timeout=self._timeout_s, follow_redirects=False, trust_env=False) as client:
                response = client.post(url, content=body, headers=headers, extensions=extensions)
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {str(exc)[:200]}"
        return response.status_code, None if response.is_success else f"HTTP {response.status_code}"

    def _attempts(self, endpoint_id: str, event_id: str) -> int:
        # Equality on one field of the endpoint's own log (a handful of documents): no composite index.
        rows = self._store.query(deliveries_path(endpoint_id), where=[Where("event_id", "==", event_id)])
        return len(rows)

    def _record(self, endpoint_id: str, delivery: WebhookDelivery) -> None:
        self._store.create(f"{deliveries_path(endpoint_id)}/{delivery.id}", delivery.model_dump(mode="json"))

    def _disable(self, endpoint_id: str, reason: str) -> None:
        def disable(current: WebhookEndpoint) -> WebhookEndpoint | None:
            if current.status == "disabled":
                return None
            return current.model_copy(update={"status": "disabled", "disabled_at": now_ts(), "disabled_reason": reason})

        self._endpoints.update_if(endpoint_id, disable)
        log.warning("webhook endpoint disabled", extra={"endpoint_id": endpoint_id})


def _add_delivered(endpoint_id: str) -> Callable[[Document | None], Document | None]:
    def apply(current: Document | None) -> Document | None:
        if current is None or endpoint_id in current.get("delivered_to", []):
            return None
        return {**current, "delivered_to": [*current.get("delivered_to", []), endpoint_id]}

    return apply


def _pinned(destination: Destination) -> tuple[str, dict[str, object]]:
    """The URL with its host replaced by the checked address, and the TLS name to present and verify
    (the hostname, so the certificate is still checked against it)."""
    parts = urlsplit(destination.url)
    address = destination.addresses[0]
    literal = f"[{address}]" if ipaddress.ip_address(address.split("%")[0]).version == 6 else address
    netloc = f"{literal}:{destination.port}"
    pinned = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    return pinned, ({"sni_hostname": destination.host} if parts.scheme == "https" else {})


def _host_header(destination: Destination) -> str:
    parts = urlsplit(destination.url)
    default = 443 if parts.scheme == "https" else 80
    return destination.host if destination.port == default else f"{destination.host}:{destination.port}"
