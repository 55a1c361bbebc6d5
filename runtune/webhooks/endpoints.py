"""Webhook endpoints: `webhook_endpoints/{id}` (the URL, the event types, the status) and their
delivery log, `webhook_endpoints/{id}/deliveries/{attempt}`.

The signing secret is needed in clear to sign (HMAC), so it cannot be stored hashed as API keys are;
it goes to the secret store (Secret Manager in the cloud, the 0600 file store locally) as the owner's
secret `webhook-<endpoint id>`, never into the endpoint's document, a log line or a response other than
the create answer. Only the training service (which creates endpoints and runs the dispatcher) reads it.
"""

from __future__ import annotations

from runtune.owned import OwnedCollection
from runtune.ports.metadata import MetadataStore
from runtune.schemas.webhooks import WebhookEndpoint

COLLECTION = "webhook_endpoints"
DELIVERIES = "deliveries"
MAX_ENDPOINTS_PER_USER = 20
# The owner's secrets named so are the endpoints' signing secrets (`/v1/secrets` neither lists nor
# accepts them).
SECRET_NAME_PREFIX = "webhook-"


def endpoints(store: MetadataStore) -> OwnedCollection[WebhookEndpoint]:
    return OwnedCollection(store, COLLECTION, WebhookEndpoint, "webhook endpoint")


def secret_name(endpoint_id: str) -> str:
    return SECRET_NAME_PREFIX + endpoint_id.lower()


def deliveries_path(endpoint_id: str) -> str:
    return f"{COLLECTION}/{endpoint_id}/{DELIVERIES}"


def owned(collection: OwnedCollection[WebhookEndpoint], uid: str) -> list[WebhookEndpoint]:
    """The user's endpoints, newest first (a single-field equality, bounded: no composite index)."""
    return collection.few_owned(uid, MAX_ENDPOINTS_PER_USER)
