"""`/v1/webhooks`: the caller's endpoints for signed event deliveries, and the queue's dispatcher.

The signing secret appears in the create answer only; it is kept in the secret store
(`runtune/webhooks/endpoints.py`). Creating and deleting an endpoint needs a signed-in session, like
API keys: a leaked key must not be able to send the owner's events elsewhere.

`POST /internal/webhooks/deliver` is the queue's target, not a public route: the gateway routes only
`/v1`, and the service accepts it only with the dispatcher's credential (Cloud Tasks' OIDC token for
its own service account in the cloud; a local token), never the gateway's.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from runtune.api.deps import CurrentUser, SignedInUser
from runtune.errors import InvalidRequest
from runtune.outbox import envelope, outbox_entry
from runtune.owned import OwnedCollection
from runtune.ports.metadata import OrderBy
from runtune.ports.secrets import SecretStore
from runtune.schemas.common import Deleted, ListPage, is_resource_id, new_id
from runtune.schemas.webhooks import (
    TEST_EVENT,
    CreatedWebhookEndpoint,
    CreateWebhookRequest,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEvent,
)
from runtune.webhooks.destinations import DestinationPolicy
from runtune.webhooks.dispatcher import Dispatcher
from runtune.webhooks.endpoints import MAX_ENDPOINTS_PER_USER, deliveries_path, owned, secret_name
from runtune.webhooks.publisher import OutboxPublisher
from runtune.webhooks.signing import new_secret

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])
dispatch_router = APIRouter(include_in_schema=False)
DISPATCH_PATH = "/internal/webhooks/deliver"
MAX_DELIVERIES_SHOWN = 100


def _endpoints(request: Request) -> OwnedCollection[WebhookEndpoint]:
    return request.app.state.webhook_endpoints


def _secrets(request: Request) -> SecretStore:
    return request.app.state.secrets


def _policy(request: Request) -> DestinationPolicy:
    return request.app.state.webhook_policy


def _publisher(request: Request) -> OutboxPublisher:
    return request.app.state.webhook_publisher


Endpoints = Annotated[OwnedCollection[WebhookEndpoint], Depends(_endpoints)]
Secrets = Annotated[SecretStore, Depends(_secrets)]
Policy = Annotated[DestinationPolicy, Depends(_policy)]
Publisher = Annotated[OutboxPublisher, Depends(_publisher)]


@router.post("", response_model=CreatedWebhookEndpoint)
def create_webhook(
    body: CreateWebhookRequest, user: SignedInUser, endpoints: Endpoints, secrets: Secrets, policy: Policy
) -> CreatedWebhookEndpoint:
    policy.check(body.url)  # a 400 naming `url` for a private, loopback or metadata address
    if len(owned(endpoints, user.uid)) >= MAX_ENDPOINTS_PER_USER:
        raise InvalidRequest(
            f"You have {MAX_ENDPOINTS_PER_USER} webhook endpoints, the most one user may hold; delete one first",
            code="too_many_webhooks",
        )
    endpoint = WebhookEndpoint(
        id=new_id("wh"), owner=user.uid, url=body.url, events=body.events, description=body.description
    )
    secret = new_secret()
    # The secret first: an endpoint document never exists without the secret that signs for it.
    secrets.put(user.uid, secret_name(endpoint.id), secret)
    endpoints.create(endpoint)
    return CreatedWebhookEndpoint(**endpoint.model_dump(), owner=user.uid, secret=secret)


@router.get("", response_model=ListPage[WebhookEndpoint])
def list_webhooks(user: CurrentUser, endpoints: Endpoints) -> ListPage[WebhookEndpoint]:
    return ListPage.from_overfetch(owned(endpoints, user.uid), MAX_ENDPOINTS_PER_USER)


@router.get("/{endpoint_id}", response_model=WebhookEndpoint)
def get_webhook(endpoint_id: str, user: CurrentUser, endpoints: Endpoints) -> WebhookEndpoint:
    return endpoints.get_owned(user.uid, endpoint_id)


@router.delete("/{endpoint_id}", response_model=Deleted)
def delete_webhook(endpoint_id: str, user: SignedInUser, endpoints: Endpoints, secrets: Secrets) -> Deleted:
    endpoints.get_owned(user.uid, endpoint_id)
    endpoints.store.delete_tree(endpoints.path(endpoint_id))  # the endpoint and its delivery log
    secrets.delete(user.uid, secret_name(endpoint_id))
    return Deleted(id=endpoint_id, object="webhook_endpoint.deleted")


@router.post("/{endpoint_id}/test", response_model=WebhookEvent)
def test_webhook(endpoint_id: str, user: CurrentUser, endpoints: Endpoints, publisher: Publisher) -> WebhookEvent:
    """Send a `webhook.test` event to this endpoint only (through the queue, as any event)."""
    endpoint = endpoints.get_owned(user.uid, endpoint_id)
    if endpoint.status != "enabled":
        raise InvalidRequest("The endpoint is disabled: create a new one", param="id", code="webhook_disabled")
    evt_id = "evt_" + new_id("test").split("-", 1)[1]
    path, entry = outbox_entry(TEST_EVENT, endpoint.id, user.uid, evt_id=evt_id, endpoint_id=endpoint.id)
    endpoints.store.create(path, entry)
    # Enqueued now, before the answer (nothing runs after it); the sweep covers a failure here.
    publisher.publish(evt_id, entry)
    return WebhookEvent.model_validate(envelope(entry))


@router.get("/{endpoint_id}/deliveries", response_model=ListPage[WebhookDelivery])
def list_deliveries(
    endpoint_id: str,
    user: CurrentUser,
    endpoints: Endpoints,
    limit: Annotated[int, Query(ge=1, le=MAX_DELIVERIES_SHOWN)] = 50,
) -> ListPage[WebhookDelivery]:
    """The endpoint's newest delivery attempts first (one per try: a retried event shows each)."""
    endpoints.get_owned(user.uid, endpoint_id)
    rows = endpoints.store.query(
        deliveries_path(endpoint_id), order_by=[OrderBy("attempted_at", descending=True)], limit=limit + 1
    )
    return ListPage.from_overfetch([WebhookDelivery.model_validate(doc) for _, doc in rows], limit)


class DeliveryTask(BaseModel):
    event_id: str
    endpoint_id: str


@dispatch_router.post(DISPATCH_PATH)
async def deliver(task: DeliveryTask, request: Request) -> JSONResponse:
    if not (is_resource_id(task.event_id) and is_resource_id(task.endpoint_id)):
        return JSONResponse({"status": "dropped"})  # no task of ours: nothing to retry
    dispatcher: Dispatcher = request.app.state.webhook_dispatcher
    status = await run_in_threadpool(dispatcher.deliver, task.event_id, task.endpoint_id)
    return JSONResponse({"status": "done" if status < 300 else "retry"}, status_code=status)
