"""The one way a private service is built: error envelope, internal credential, request ids, health."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import Response

from runtune.api.deps import CurrentUser
from runtune.api.errors import install_error_handlers
from runtune.errors import RuntuneError
from runtune.internal_auth import (
    REQUEST_ID_HEADER,
    GoogleIdTokenVerifier,
    InternalCredentialVerifier,
    LocalTokenVerifier,
)
from runtune.logging import configure_logging
from runtune.settings import ServiceSettings

log = logging.getLogger("runtune.service")

_OPEN_PATHS = frozenset({"/healthz"})

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def internal_verifier(settings: ServiceSettings) -> InternalCredentialVerifier:
    if settings.is_local:
        assert settings.internal_token_sha256  # checked by the settings validator
        return LocalTokenVerifier(settings.internal_token_sha256)
    assert settings.service_audience and settings.gateway_service_account
    return GoogleIdTokenVerifier(settings.service_audience, settings.gateway_service_account)


class GatewayOnlyMiddleware(BaseHTTPMiddleware):
    """Refuses every request that does not carry the gateway's internal credential."""

    def __init__(self, app: Any, verifier: InternalCredentialVerifier, service: str) -> None:
        super().__init__(app)
        self._verifier = verifier
        self._service = service

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        started = time.perf_counter()
        if request.url.path not in _OPEN_PATHS:
            try:
                self._verifier.verify(request.headers.get("authorization"))
            except RuntuneError as exc:
                return JSONResponse(exc.envelope(), status_code=exc.status_code)
        response = await call_next(request)
        log.info(
            "request",
            extra={
                "method": request.method,
                "path": request.url.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "request_id": request.headers.get(REQUEST_ID_HEADER),
            },
        )
        return response


def _identity_router() -> APIRouter:
    router = APIRouter()

    @router.get("/v1/me")
    def me(user: CurrentUser) -> dict[str, Any]:
        return {"object": "user", "id": user.uid, "email": user.email}

    return router


def create_service_app(
    name: str,
    settings: ServiceSettings,
    *,
    routers: list[APIRouter],
    lifespan: Lifespan | None = None,
) -> FastAPI:
    configure_logging(name, settings.log_level)

    @asynccontextmanager
    async def run(app: FastAPI) -> AsyncIterator[None]:
        app.state.settings = settings
        if lifespan is None:
            yield
        else:
            async with lifespan(app):
                yield

    app = FastAPI(title=f"runtune-{name}", lifespan=run, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    app.add_middleware(GatewayOnlyMiddleware, verifier=internal_verifier(settings), service=name)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "service": name}

    app.include_router(_identity_router())
    for router in routers:
        app.include_router(router)
    return app
