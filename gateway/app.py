"""The gateway: the only public entry of Runtune.

For every `/v1/...` request: verify the Firebase ID token (or the API key), drop any identity header the client
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
from gateway.signup import SignupRule
from runtune import wiring
from runtune.api.errors import install_error_handlers
from runtune.api_keys import READ_METHODS, ApiKeyVerifier, looks_like_key
from runtune.errors import NotFound, PermissionDenied, RateLimited, RuntuneError, Unauthenticated
from runtune.internal_auth import REQUEST_ID_HEADER, InternalCredentialMinter
from runtune.logging import configure_logging
from runtune.ports.identity import Identity, IdentityVerifier
from runtune.settings import GatewaySettings

log = logging.getLogger("runtune.gateway")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
# A key revoked through this instance stops working here at once, not after the lookup cache's bound.
_REVOKE_KEY = re.compile(r"^/v1/api_keys/([A-Za-z0-9_-]+)$")


class Gateway:
    def __init__(
        self,
        settings: GatewaySettings,
        verifier: IdentityVerifier,
        minter: InternalCredentialMinter,
        session: aiohttp.ClientSession,
        keys: IdentityVerifier | None = None,
    ) -> None:
        self.settings = settings
        self.verifier = verifier
        self.keys = keys
        self.minter = minter
        self.session = session
        self.limiter = RateLimiter(settings.rate_limit_per_minute, settings.rate_limit_burst)
        self.signup = SignupRule.from_settings(settings)

    async def identify(self, request: Request) -> Identity:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated(
                "Missing bearer token: send 'Authorization: Bearer <Firebase ID token or API key>'",
                code="missing_token",
            )
        if self.keys is not None and looks_like_key(token):
            return await self._verified(self.keys, token)
        if len(token) > 8192 or token.count(".") != 2:
            raise Unauthenticated("The bearer token is not a Firebase ID token or API key", code="invalid_token")
        return await self._verified(self.verifier, token)

    @staticmethod
    async def _verified(verifier: IdentityVerifier, token: str) -> Identity:
        identity = verifier.cached(token)
        if identity is None:
            # A first sight costs a signature check or a lookup: keep it off the event loop.
            identity = await anyio.to_thread.run_sync(verifier.verify, token)
        return identity

    def _after(self, request: Request, response: Response) -> None:
        revoked = _REVOKE_KEY.match(request.url.path) if request.method == "DELETE" else None
        if revoked and response.status_code == 200 and isinstance(self.keys, ApiKeyVerifier):
            self.keys.forget(revoked.group(1))

    @staticmethod
    def authorize(request: Request, identity: Identity) -> None:
        if identity.read_only and request.method not in READ_METHODS:
            raise PermissionDenied(
                f"This API key is read-only: {request.method} needs a key with the 'full' scope",
                code="insufficient_scope",
            )

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
            self.signup.check(identity)
            self.authorize(request, identity)
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
            self._after(request, response)
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


def create_app(
    settings: GatewaySettings | None = None,
    *,
    verifier: IdentityVerifier | None = None,
    minter: InternalCredentialMinter | None = None,
    keys: IdentityVerifier | None = None,
) -> Starlette:
    settings = settings or GatewaySettings()
    configure_logging("gateway", settings.log_level)
    verifier = verifier or wiring.identity_verifier(settings)
    minter = minter or wiring.internal_minter(settings)
    keys = keys or wiring.api_key_verifier(settings)

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
            app.state.gateway = Gateway(settings, verifier, minter, session, keys)
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
