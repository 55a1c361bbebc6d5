"""Streams a request to its private service and the answer back, never holding either body whole."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse

from runtune.errors import UpstreamUnavailable
from runtune.internal_auth import IDENTITY_HEADERS, REQUEST_ID_HEADER, USER_EMAIL_HEADER, USER_ID_HEADER
from runtune.ports.identity import Identity

# Hop-by-hop headers (RFC 9110 7.6.1) and what the gateway itself decides.
_DROP_REQUEST = (
    frozenset(
        {
            "host",
            "connection",
            "keep-alive",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
            "authorization",
            "cookie",
        }
    )
    | IDENTITY_HEADERS
)
_DROP_RESPONSE = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"})


def upstream_headers(
    request: Request, identity: Identity, authorization: str, request_id: str
) -> list[tuple[str, str]]:
    headers = [(k, v) for k, v in request.headers.items() if k not in _DROP_REQUEST and k != REQUEST_ID_HEADER]
    headers.append(("authorization", authorization))
    headers.append((USER_ID_HEADER, identity.uid))
    if identity.email:
        headers.append((USER_EMAIL_HEADER, identity.email))
    headers.append((REQUEST_ID_HEADER, request_id))
    return headers


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


async def forward(
    client: httpx.AsyncClient,
    request: Request,
    base_url: str,
    headers: list[tuple[str, str]],
    request_id: str,
) -> StreamingResponse:
    has_body = request.headers.get("content-length", "0") != "0" or "transfer-encoding" in request.headers
    upstream_request = client.build_request(
        request.method,
        base_url + request.url.path,
        params=request.url.query,
        headers=headers,
        content=_body(request) if has_body else None,
    )
    try:
        upstream = await client.send(upstream_request, stream=True)
    except httpx.TransportError as exc:
        raise UpstreamUnavailable("The service is unavailable; try again shortly") from exc
    response_headers = {k: v for k, v in upstream.headers.items() if k not in _DROP_RESPONSE}
    response_headers[REQUEST_ID_HEADER] = request_id
    return StreamingResponse(
        upstream.aiter_raw(),
        status_code=upstream.status_code,
        headers=response_headers,
        background=BackgroundTask(upstream.aclose),
    )
