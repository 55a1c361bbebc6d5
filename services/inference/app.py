"""The inference service (private: reached only through the gateway): chat completions, vibe checks,
evaluations, exports, and one model's retrieval and deletion, over an OpenAI-compatible engine (vLLM in
the cloud, the local engine server on the laptop)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from runtune import wiring
from runtune.api.executions import reconciling
from runtune.api.service_app import create_service_app
from runtune.inference.serving import build_serving
from runtune.ports.launcher import Workload
from runtune.ports.metadata import MetadataStore
from runtune.quotas import StreamSlots
from runtune.settings import InferenceSettings
from services.inference import chat_api, evaluations_api, exports_api, models_api, vibe_api
from services.inference.executions import evaluation_executions, export_executions
from services.inference.service import InferenceService

# Its name in runtune/permissions.py: locally its adapters refuse what its cloud account could not do.
DEPLOYABLE = "inference"


@asynccontextmanager
async def lifespan(app: FastAPI, settings: InferenceSettings, store: MetadataStore) -> AsyncIterator[None]:
    blobs = wiring.blob_store(settings, deployable=DEPLOYABLE)
    app.state.inference = build_serving(settings, store, blobs, InferenceService)
    app.state.streams = StreamSlots(settings.quota_open_streams)
    launcher = wiring.job_launcher(settings, Workload.evaluate)
    evaluations = app.state.evaluations = evaluation_executions(
        store,
        launcher,
        heartbeat_s=settings.evaluation_heartbeat_s,
        timeout_s=settings.evaluation_timeout_s,
        quotas=settings.quotas,
    )
    converter = wiring.job_launcher(settings, Workload.convert)
    conversions = app.state.conversions = export_executions(
        store, converter, heartbeat_s=settings.convert_heartbeat_s, timeout_s=settings.convert_timeout_s
    )
    # Items left unfinished by executions that ended while no instance was looking.
    await run_in_threadpool(evaluations.sweep)
    await run_in_threadpool(conversions.sweep)
    # The local launchers stop their executions with the service (as Cloud Run would not): those
    # items are failed at once with that reason (`sweep(force=True)`) rather than at the next start.
    try:
        async with (
            reconciling(
                "evaluations",
                evaluations.sweep,
                settings.reconcile_every_s,
                launcher,
                after_shutdown=lambda: evaluations.sweep(force=True),
            ),
            reconciling(
                "exports",
                conversions.sweep,
                settings.reconcile_every_s,
                converter,
                after_shutdown=lambda: conversions.sweep(force=True),
            ),
        ):
            yield
    finally:
        await app.state.inference.aclose()


def create_app(settings: InferenceSettings | None = None) -> FastAPI:
    routers = [chat_api.router, vibe_api.router, evaluations_api.router, exports_api.router, models_api.router]
    return create_service_app(DEPLOYABLE, settings or InferenceSettings(), routers=routers, lifespan=lifespan)
