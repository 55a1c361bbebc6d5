"""Dependencies of the private services: who is calling, and the adapters the lifespan built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from runtune.errors import InvalidRequest, PermissionDenied, Unauthenticated
from runtune.internal_auth import (
    AUTH_METHOD_HEADER,
    REQUEST_ID_HEADER,
    USER_EMAIL_HEADER,
    USER_EMAIL_VERIFIED_HEADER,
    USER_ID_HEADER,
)
from runtune.quotas import StreamSlots
from runtune.schemas.common import is_resource_id


@dataclass(frozen=True)
class UserContext:
    uid: str
    email: str | None
    request_id: str | None
    # `id_token` (a signed-in session) or `api_key`, as the gateway verified it.
    auth_method: str = "id_token"
    email_verified: bool = False


def current_user(request: Request) -> UserContext:
    # The internal credential is checked by middleware before any route runs; here only the
    # identity the gateway set is read.
    uid = request.headers.get(USER_ID_HEADER)
    if not uid:
        raise Unauthenticated("No caller identity: requests must come through the gateway", code="not_gateway")
    return UserContext(
        uid=uid,
        email=request.headers.get(USER_EMAIL_HEADER) or None,
        request_id=request.headers.get(REQUEST_ID_HEADER),
        auth_method=request.headers.get(AUTH_METHOD_HEADER) or "id_token",
        email_verified=request.headers.get(USER_EMAIL_VERIFIED_HEADER) == "true",
    )


CurrentUser = Annotated[UserContext, Depends(current_user)]


def signed_in_user(user: CurrentUser) -> UserContext:
    """The caller, if it came with a signed-in session: what creates or revokes credentials must not
    be doable with a credential alone (a leaked key could otherwise mint itself successors)."""
    if user.auth_method != "id_token":
        raise PermissionDenied(
            "This needs a signed-in session (a Firebase ID token, e.g. `runtune token`), not an API key",
            code="session_required",
        )
    return user


SignedInUser = Annotated[UserContext, Depends(signed_in_user)]


@dataclass(frozen=True)
class PageParams:
    after: str | None
    limit: int


def page_params(
    after: Annotated[str | None, Query(description="Id of the last item of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Items per page")] = 20,
) -> PageParams:
    # Every list of every service takes its cursor here: one that no page could have returned is
    # refused before any lookup or parsing (a 400 naming it, never a 500 from the store or `int`).
    if after is not None and not is_resource_id(after):
        raise InvalidRequest(
            f"'after' is not an id this list returned: '{after[:200]}'", param="after", code="invalid_cursor"
        )
    return PageParams(after=after, limit=limit)


Pagination = Annotated[PageParams, Depends(page_params)]


def stream_slots(request: Request) -> StreamSlots:
    """The instance's open SSE streams per user (the lifespan sets `app.state.streams`)."""
    return request.app.state.streams


Streams = Annotated[StreamSlots, Depends(stream_slots)]
