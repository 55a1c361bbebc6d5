"""The inference service (private: reached only through the gateway)."""

from __future__ import annotations

from fastapi import FastAPI

from runtune.api.service_app import create_service_app
from runtune.settings import ServiceSettings


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    return create_service_app("inference", settings or ServiceSettings(), routers=[])
