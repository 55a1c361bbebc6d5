"""Dependencies of the private services: who is calling, and the adapters the lifespan built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from runtune.errors import Unauthenticated
from runtune.internal_auth import REQUEST_ID_HEADER, USER_EMAIL_HEADER, USER_ID_HEADER
from runtune.quotas import StreamSlots


@dataclass(frozen=True)
class UserContext:
    uid: str
    email: str | None
    request_id: str | None


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
    )


CurrentUser = Annotated[UserContext, Depends(current_user)]


@dataclass(frozen=True)
class PageParams:
    after: str | None
    limit: int


def page_params(
    after: Annotated[str | None, Query(description="Id of the last item of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Items per page")] = 20,
) -> PageParams:
    return PageParams(after=after, limit=limit)


Pagination = Annotated[PageParams, Depends(page_params)]


def stream_slots(request: Request) -> StreamSlots:
    """The instance's open SSE streams per user (the lifespan sets `app.state.streams`)."""
    return request.app.state.streams


Streams = Annotated[StreamSlots, Depends(stream_slots)]
