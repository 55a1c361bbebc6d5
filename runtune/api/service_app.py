"""The one way a private service is built: error envelope, internal credential, request ids, health."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TypeVar

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtune import wiring
from runtune.api.deps import CurrentUser
from runtune.api.errors import install_error_handlers
from runtune.errors import RuntuneError
from runtune.internal_auth import REQUEST_ID_HEADER, USER_ID_HEADER, InternalCredentialVerifier
from runtune.logging import configure_logging
from runtune.ports.metadata import MetadataStore
from runtune.schemas.account import Me
from runtune.settings import ServiceSettings

log = logging.getLogger("runtune.service")

_OPEN_PATHS = frozenset({"/healthz"})

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
# What a service opens and runs while it serves, handed its settings and its metadata store.
Lifespan = Callable[[FastAPI, SettingsT, MetadataStore], AbstractAsyncContextManager[None]]


class GatewayOnlyMiddleware:
    """Refuses every request that does not carry the gateway's internal credential.

    Plain ASGI rather than `BaseHTTPMiddleware`: it sits on every request, streaming ones included.
    """

    def __init__(
        self,
        app: ASGIApp,
        verifier: InternalCredentialVerifier,
        path_verifiers: dict[str, InternalCredentialVerifier] | None = None,
    ) -> None:
        """`path_verifiers`: paths that take another caller's credential instead of the gateway's (the
        webhooks dispatcher: the queue's)."""
        self._app = app
        self._verifier = verifier
        self._path_verifiers = path_verifiers or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _OPEN_PATHS:
            await self._app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            verifier = self._path_verifiers.get(scope["path"], self._verifier)
            await verifier.verify_async(headers.get("authorization"))
        except RuntuneError as exc:
            await JSONResponse(exc.envelope(), status_code=exc.status_code)(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}

        async def send_and_record(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_and_record)
        finally:
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status["code"],
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "request_id": headers.get(REQUEST_ID_HEADER),
                    "uid": headers.get(USER_ID_HEADER),
                },
            )


def _identity_router() -> APIRouter:
    router = APIRouter()

    @router.get("/v1/me", response_model=Me)
    def me(user: CurrentUser) -> Me:
        return Me(id=user.uid, email=user.email)

    return router


def create_service_app(
    name: str,
    settings: SettingsT,
    *,
    routers: list[APIRouter],
    lifespan: Lifespan[SettingsT] | None = None,
    path_verifiers: dict[str, InternalCredentialVerifier] | None = None,
) -> FastAPI:
    """`name`: the deployable's, in runtune/permissions.py when there is a `lifespan`: the metadata
    store it is handed (and `app.state.store`) is opened under that name, so that locally it refuses
    what the service's cloud account could not do."""
    configure_logging(name, settings.log_level)

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        if lifespan is None:
            yield
            return
        store = app.state.store = wiring.metadata_store(settings, deployable=name)
        async with lifespan(app, settings, store):
            yield

    app = FastAPI(title=f"runtune-{name}", lifespan=run, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.add_middleware(
        GatewayOnlyMiddleware, verifier=wiring.internal_verifier(settings), path_verifiers=path_verifiers
    )

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "service": name}

    app.include_router(_identity_router())
    for router in routers:
        app.include_router(router)
    return app
