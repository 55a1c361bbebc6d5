"""The training service (private: reached only through the gateway): fine-tuning jobs, the model
catalog, and the users' own tokens the trainer needs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from runtune import wiring
from runtune.api.service_app import create_service_app
from runtune.settings import ServiceSettings
from services.training import jobs_api, models_api, secrets_api
from services.training.jobs_service import JobService, SchedulingPolicy

# Its name in runtune/permissions.py: locally its adapters refuse what its cloud account could not do.
DEPLOYABLE = "training"

log = logging.getLogger("runtune.training")


async def _reconcile_forever(jobs: JobService, every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            ended = await run_in_threadpool(jobs.reconcile)
        except Exception:  # one bad pass must not stop the loop that keeps jobs honest
            log.exception("reconcile pass failed")
            continue
        if ended:
            log.info("reconciled jobs", extra={"ended": ended})


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = wiring.metadata_store(settings, deployable=DEPLOYABLE)
        launcher = wiring.job_launcher(settings)
        app.state.secrets = wiring.secret_store(settings, deployable=DEPLOYABLE)
        app.state.jobs = JobService(
            store,
            launcher,
            SchedulingPolicy(
                max_running_per_user=settings.max_running_jobs_per_user,
                heartbeat_stale_s=settings.heartbeat_stale_s,
                start_timeout_s=settings.start_timeout_s,
                task_timeout_s=settings.trainer_task_timeout_s,
            ),
            profile=settings.profile,
            offered_gpus=settings.offered_gpus,
        )
        reconciler = asyncio.create_task(_reconcile_forever(app.state.jobs, settings.reconcile_every_s))
        try:
            yield
        finally:
            reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reconciler
            shutdown = getattr(launcher, "shutdown", None)
            if shutdown is not None:  # the local launcher stops its trainer processes with the service
                await run_in_threadpool(shutdown)

    return create_service_app(
        DEPLOYABLE,
        settings,
        routers=[jobs_api.router, models_api.router, secrets_api.router],
        lifespan=lifespan,
    )
