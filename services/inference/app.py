"""The inference service (private: reached only through the gateway): chat completions, vibe checks,
evaluations, exports, and one model's retrieval and deletion, over an OpenAI-compatible engine (vLLM in
the cloud, the local engine server on the laptop)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from runtune import wiring
from runtune.api.service_app import create_service_app
from runtune.inference.serving import build_serving
from runtune.ports.launcher import Workload
from runtune.settings import InferenceSettings
from services.inference import chat_api, evaluations_api, exports_api, models_api, vibe_api
from services.inference.evaluations import EvaluationExecutions
from services.inference.service import InferenceService

# Its name in runtune/permissions.py: locally its adapters refuse what its cloud account could not do.
DEPLOYABLE = "inference"

log = logging.getLogger("runtune.inference")


async def _sweep_forever(evaluations: EvaluationExecutions, every_s: float) -> None:
    """Also while running: reads reconcile the evaluations they show, this catches the others."""
    while True:
        await asyncio.sleep(every_s)
        try:
            ended = await run_in_threadpool(evaluations.sweep)
        except Exception:  # a Firestore hiccup: the next sweep tries again
            log.exception("sweeping evaluations failed")
            continue
        if ended:
            log.info("reconciled evaluations", extra={"ended": ended})


def create_app(settings: InferenceSettings | None = None) -> FastAPI:
    settings = settings or InferenceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = wiring.metadata_store(settings, deployable=DEPLOYABLE)
        blobs = wiring.blob_store(settings, deployable=DEPLOYABLE)
        app.state.store = store
        app.state.inference = build_serving(settings, store, blobs, InferenceService)
        launcher = wiring.job_launcher(settings, Workload.evaluate)
        app.state.evaluations = EvaluationExecutions(
            store, launcher, heartbeat_s=settings.evaluation_heartbeat_s, timeout_s=settings.evaluation_timeout_s
        )
        # Evaluations left unfinished by executions that ended while no instance was looking.
        await run_in_threadpool(app.state.evaluations.sweep)
        sweeping = asyncio.create_task(_sweep_forever(app.state.evaluations, settings.reconcile_every_s))
        try:
            yield
        finally:
            sweeping.cancel()
            await asyncio.gather(sweeping, return_exceptions=True)
            shutdown = getattr(launcher, "shutdown", None)
            if shutdown is not None:
                # The local launcher stops its evaluations with the service (as Cloud Run would not):
                # fail them now with that reason rather than at the next start.
                await run_in_threadpool(shutdown)
                await run_in_threadpool(app.state.evaluations.sweep, force=True)
            await app.state.inference.aclose()

    return create_service_app(
        DEPLOYABLE,
        settings,
        routers=[chat_api.router, vibe_api.router, evaluations_api.router, exports_api.router, models_api.router],
        lifespan=lifespan,
    )
