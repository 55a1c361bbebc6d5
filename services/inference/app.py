"""The inference service (private: reached only through the gateway): chat completions, vibe checks,
evaluations and exports, over an OpenAI-compatible engine (vLLM in the cloud, the local engine server
on the laptop)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from runtune import wiring
from runtune.adapters.openai_engine import OpenAIEngine
from runtune.api.service_app import create_service_app
from runtune.inference.adapter_pool import AdapterPool
from runtune.owned import OwnedCollection
from runtune.ports.metadata import MetadataStore
from runtune.schemas.inference import Evaluation
from runtune.settings import InferenceSettings
from services.inference import chat_api, evaluations_api, exports_api, vibe_api
from services.inference.adapters import AdapterStager
from services.inference.evaluations import STALE_S, EvaluationRunner, fail_orphaned
from services.inference.service import InferenceService

# Its name in runtune/permissions.py: locally its adapters refuse what its cloud account could not do.
DEPLOYABLE = "inference"

log = logging.getLogger("runtune.inference")


async def _sweep_orphans(store: MetadataStore, evaluations: OwnedCollection[Evaluation]) -> None:
    """Also while running: a process that stopped just before this one started still had a fresh beat."""
    while True:
        await asyncio.sleep(STALE_S / 2)
        try:
            await run_in_threadpool(fail_orphaned, store, evaluations)
        except Exception:  # a Firestore hiccup: the next sweep tries again
            log.exception("sweeping orphaned evaluations failed")


def create_app(settings: InferenceSettings | None = None) -> FastAPI:
    settings = settings or InferenceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = wiring.metadata_store(settings, deployable=DEPLOYABLE)
        blobs = wiring.blob_store(settings, deployable=DEPLOYABLE)
        engine = wiring.inference_engine(settings)
        stager = AdapterStager(
            AdapterPool(engine, settings.engine_max_adapters),
            blobs,
            root=settings.adapter_root,
            download=settings.engine_adapter_download,
        )
        app.state.store = store
        app.state.inference = InferenceService(store, blobs, engine, stager)
        app.state.evaluations = OwnedCollection(store, "evaluations", Evaluation, "evaluation")
        app.state.evaluation_runner = EvaluationRunner(
            app.state.inference, app.state.evaluations, settings.evaluation_concurrency
        )
        app.state.background = set()
        # Evaluations run inside this service: those a stopped process left behind would stay
        # `running` forever. (On several instances, a live one's recent heartbeat spares its own.)
        await run_in_threadpool(fail_orphaned, store, app.state.evaluations)
        sweeping = asyncio.create_task(_sweep_orphans(store, app.state.evaluations))
        try:
            yield
        finally:
            for task in [*app.state.background, sweeping]:
                task.cancel()
            await asyncio.gather(*app.state.background, sweeping, return_exceptions=True)
            if isinstance(engine, OpenAIEngine):
                await engine.aclose()

    return create_service_app(
        DEPLOYABLE,
        settings,
        routers=[chat_api.router, vibe_api.router, evaluations_api.router, exports_api.router],
        lifespan=lifespan,
    )
