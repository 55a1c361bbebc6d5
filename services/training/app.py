"""The training service (private: reached only through the gateway): fine-tuning jobs, models, and
the users' own tokens the trainer needs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from runtune import wiring
from runtune.api.service_app import create_service_app
from runtune.settings import ServiceSettings
from services.training import secrets_api


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.secrets = wiring.secret_store(settings)
        yield

    return create_service_app("training", settings, routers=[secrets_api.router], lifespan=lifespan)
