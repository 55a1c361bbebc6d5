"""Forwards a request to its private service and the answer back.

Bodies stream both ways: an upload goes upstream chunk by chunk, and a large or open-ended answer
(downloads, Server-Sent Events) comes back as it is produced. Only bodies whose declared length is
at most `SMALL_BODY` are read whole, because streaming a few hundred bytes costs more than it saves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from yarl import URL

from runtune.errors import UpstreamUnavailable
from runtune.internal_auth import (
    AUTH_METHOD_HEADER,
    IDENTITY_HEADERS,
    REQUEST_ID_HEADER,
    USER_EMAIL_HEADER,
    USER_EMAIL_VERIFIED_HEADER,
    USER_ID_HEADER,
)
from runtune.ports.identity import Identity

SMALL_BODY = 64 * 1024

# Hop-by-hop headers (RFC 9110 7.6.1), and what the gateway itself decides.
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
            REQUEST_ID_HEADER,
        }
    )
    | IDENTITY_HEADERS
)
# Headers a proxy or Google's front end sets to say who called and from where (`Forwarded`,
# `X-Forwarded-For`...), and the credentials Cloud Run reads instead of `Authorization`
# (`X-Serverless-Authorization`) or IAP sets (`X-Goog-Authenticated-User-*`). A client could send
# any of them; a service behind the gateway must never see one the gateway did not set, so they are
# dropped whole, by name or prefix, and the gateway sets none.
_DROP_REQUEST_NAMES = frozenset(
    {
        "forwarded",
        "via",
        "x-real-ip",
        "x-client-ip",
        "true-client-ip",
        "cf-connecting-ip",
        "x-cluster-client-ip",
        "x-original-url",
        "x-rewrite-url",
        "x-original-forwarded-for",
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-serverless-authorization",
    }
)
_DROP_REQUEST_PREFIXES = ("x-forwarded-", "x-user-", "x-goog-", "x-envoy-", "x-apigateway-", "x-endpoint-api-")


def _dropped(name: str) -> bool:
    return name in _DROP_REQUEST or name in _DROP_REQUEST_NAMES or name.startswith(_DROP_REQUEST_PREFIXES)


# The gateway's own server adds `date` and `server`; the upstream's would repeat them.
_DROP_RESPONSE = frozenset(
    {b"connection", b"keep-alive", b"transfer-encoding", b"te", b"trailer", b"upgrade", b"date", b"server"}
)


def upstream_headers(
    request: Request, identity: Identity, authorization: str, request_id: str
) -> list[tuple[str, str]]:
    headers = [(k, v) for k, v in request.headers.items() if not _dropped(k)]
    headers.append(("authorization", authorization))
    headers.append((USER_ID_HEADER, identity.uid))
    headers.append((AUTH_METHOD_HEADER, identity.method))
    if identity.email:
        headers.append((USER_EMAIL_HEADER, identity.email))
        headers.append((USER_EMAIL_VERIFIED_HEADER, "true" if identity.email_verified else "false"))
    headers.append((REQUEST_ID_HEADER, request_id))
    return headers


async def _stream(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


def _declared_length(headers: object) -> int | None:
    value = headers.get("content-length")  # type: ignore[attr-defined]
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


async def _request_body(request: Request) -> bytes | AsyncIterator[bytes] | None:
    length = _declared_length(request.headers)
    if length == 0 or (length is None and "transfer-encoding" not in request.headers):
        return None
    if length is not None and length <= SMALL_BODY:
        return await request.body()
    return _stream(request)


async def forward(
    session: aiohttp.ClientSession,
    request: Request,
    base_url: str,
    headers: list[tuple[str, str]],
    request_id: str,
) -> Response:
    # The path exactly as the client encoded it: a decoded one ("a b") is not a valid request line.
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    target = raw_path.decode("latin-1") + (f"?{query.decode('latin-1')}" if query else "")
    url = URL(base_url + target, encoded=True)
    try:
        upstream = await session.request(
            request.method, url, headers=headers, data=await _request_body(request), allow_redirects=False
        )
    except aiohttp.ClientError as exc:
        raise UpstreamUnavailable("The service is unavailable; try again shortly") from exc
    raw_headers = [(k, v) for k, v in upstream.raw_headers if k.lower() not in _DROP_RESPONSE]
    raw_headers.append((REQUEST_ID_HEADER.encode(), request_id.encode()))
    length = _declared_length(upstream.headers)
    if length is not None and length <= SMALL_BODY:
        try:
            body = await upstream.read()
        finally:
            upstream.release()
        response = Response(body, status_code=upstream.status)
        response.raw_headers = raw_headers
        return response
    streaming = StreamingResponse(_relay(upstream), status_code=upstream.status)
    streaming.raw_headers = raw_headers
    return streaming


async def _relay(upstream: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in upstream.content.iter_any():
            yield chunk
    finally:
        upstream.release()
