"""The gateway: the only public entry of Runtune.

For every `/v1/...` request: verify the Firebase ID token, drop any identity header the client
sent, set `X-User-ID` from the token, rate-limit per user, and stream the request to the private
service that owns the path (with the gateway's internal credential) and its answer back.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from gateway.frontend import SinglePageApp, config_endpoint
from gateway.proxy import forward, upstream_headers
from gateway.ratelimit import RateLimiter, retry_after_header
from gateway.routes import upstream_for
from runtune.api.errors import install_error_handlers
from runtune.errors import NotFound, RateLimited, RuntuneError, Unauthenticated
from runtune.internal_auth import (
    REQUEST_ID_HEADER,
    GoogleIdTokenMinter,
    InternalCredentialMinter,
    LocalTokenMinter,
)
from runtune.logging import configure_logging
from runtune.ports.identity import Identity, IdentityVerifier
from runtune.settings import GatewaySettings

log = logging.getLogger("runtune.gateway")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class Gateway:
    def __init__(
        self,
        settings: GatewaySettings,
        verifier: IdentityVerifier,
        minter: InternalCredentialMinter,
        session: aiohttp.ClientSession,
    ) -> None:
        self.settings = settings
        self.verifier = verifier
        self.minter = minter
        self.session = session
        self.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)

    async def identify(self, request: Request) -> Identity:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated(
                "Missing bearer token: send 'Authorization: Bearer <Firebase ID token>'", code="missing_token"
            )
        if len(token) > 8192 or token.count(".") != 2:
            raise Unauthenticated("The bearer token is not a Firebase ID token", code="invalid_token")
        identity = self.verifier.cached(token)
        if identity is None:
            # A first sight costs a signature check and a user lookup: keep it off the event loop.
            identity = await anyio.to_thread.run_sync(self.verifier.verify, token)
        return identity

    async def handle(self, request: Request) -> Response:
        started = time.perf_counter()
        supplied = request.headers.get(REQUEST_ID_HEADER, "")
        request_id = supplied if _REQUEST_ID.match(supplied) else uuid.uuid4().hex
        uid = None
        try:
            service = upstream_for(request.url.path)
            if service is None:
                raise NotFound(f"Unknown path '{request.url.path}'", code="unknown_path")
            identity = await self.identify(request)
            uid = identity.uid
            wait = self.limiter.acquire(uid)
            if wait > 0:
                raise RateLimited(
                    "Too many requests; slow down and retry after the time in Retry-After",
                    headers={"Retry-After": retry_after_header(wait)},
                )
            base_url = self.settings.upstreams[service]
            authorization = await self.minter.authorization_async(base_url)
            headers = upstream_headers(request, identity, authorization, request_id)
            response: Response = await forward(self.session, request, base_url, headers, request_id)
        except RuntuneError as exc:
            response = JSONResponse(exc.envelope(), status_code=exc.status_code, headers=exc.headers)
            response.headers[REQUEST_ID_HEADER] = request_id
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.url.path,
                "status": response.status_code,
                "uid": uid,
                "request_id": request_id,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
            },
        )
        return response


def _default_verifier(settings: GatewaySettings) -> IdentityVerifier:
    from runtune.adapters.firebase_identity import FirebaseIdentityVerifier

    return FirebaseIdentityVerifier(
        settings.project_id, check_revoked=settings.token_check_revoked, cache_ttl_s=settings.token_cache_s
    )


def _default_minter(settings: GatewaySettings) -> InternalCredentialMinter:
    if settings.internal_token is not None:
        return LocalTokenMinter(settings.internal_token.get_secret_value())
    return GoogleIdTokenMinter()


def create_app(
    settings: GatewaySettings | None = None,
    *,
    verifier: IdentityVerifier | None = None,
    minter: InternalCredentialMinter | None = None,
) -> Starlette:
    settings = settings or GatewaySettings()
    configure_logging("gateway", settings.log_level)
    verifier = verifier or _default_verifier(settings)
    minter = minter or _default_minter(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=512, limit_per_host=256, keepalive_timeout=30),
            # sock_read bounds silence between chunks, not a whole (possibly hours-long) SSE stream.
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=settings.upstream_timeout_s),
            auto_decompress=False,  # relay bytes as they are, compressed or not
            skip_auto_headers=("User-Agent", "Accept-Encoding"),
        )
        async with session:
            app.state.gateway = Gateway(settings, verifier, minter, session)
            yield

    async def proxy(request: Request) -> Response:
        return await request.app.state.gateway.handle(request)

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "ok", "service": "gateway"})

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    routes: list[Route | Mount] = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/v1/{path:path}", proxy, methods=methods),
        Route("/config.json", config_endpoint(settings), methods=["GET"]),
    ]
    if settings.frontend_dir.is_dir():
        routes.append(Mount("/", SinglePageApp(str(settings.frontend_dir)), name="frontend"))
    middleware = [
        Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=methods,
            allow_headers=[
                "authorization",
                "content-type",
                "idempotency-key",
                "last-event-id",
                "x-request-id",
            ],
            expose_headers=["x-request-id", "retry-after"],
            max_age=600,
        )
    ]
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    install_error_handlers(app)
    return app
