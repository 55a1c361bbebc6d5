"""The training service (private: reached only through the gateway): fine-tuning jobs, the model
catalog, the users' own tokens the trainer needs, their API keys and webhook endpoints, and the
webhooks' dispatcher (called by the queue, not the gateway) and outbox sweep."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from runtune import wiring
from runtune.api.executions import reconciling
from runtune.api.service_app import create_service_app
from runtune.api_keys import api_keys
from runtune.ports.metadata import MetadataStore
from runtune.quotas import StreamSlots
from runtune.settings import ServiceSettings
from runtune.webhooks.dispatcher import Dispatcher, RetryPolicy
from runtune.webhooks.endpoints import endpoints
from runtune.webhooks.publisher import OutboxPublisher
from services.training import api_keys_api, jobs_api, models_api, secrets_api, webhooks_api
from services.training.job_deletion import JobDeletion
from services.training.jobs_service import JobService, SchedulingPolicy

# Its name in runtune/permissions.py: locally its adapters refuse what its cloud account could not do.
DEPLOYABLE = "training"


@asynccontextmanager
async def lifespan(app: FastAPI, settings: ServiceSettings, store: MetadataStore) -> AsyncIterator[None]:
    launcher = wiring.job_launcher(settings)
    app.state.secrets = wiring.secret_store(settings, deployable=DEPLOYABLE)
    app.state.api_keys = api_keys(store)
    app.state.jobs = JobService(
        store,
        launcher,
        SchedulingPolicy(
            max_running_per_user=settings.max_running_jobs_per_user,
            heartbeat_stale_s=settings.heartbeat_stale_s,
            start_timeout_s=settings.start_timeout_s,
            task_timeout_s=settings.trainer_task_timeout_s,
            vertex_task_timeout_s=settings.vertex_task_timeout_s,
        ),
        profile=settings.profile,
        offered_gpus=settings.offered_gpus,
        vertex_machines=settings.vertex_machines,
        quotas=settings.quotas,
        secrets=app.state.secrets,
    )
    app.state.job_deletion = JobDeletion(store, wiring.blob_store(settings, deployable=DEPLOYABLE))
    app.state.streams = StreamSlots(settings.quota_open_streams)
    app.state.webhook_endpoints = endpoints(store)
    app.state.webhook_policy = wiring.webhook_policy(settings)
    publisher = app.state.webhook_publisher = OutboxPublisher(store, wiring.webhook_queue(settings))
    app.state.webhook_dispatcher = Dispatcher(
        store,
        app.state.secrets,
        app.state.webhook_policy,
        RetryPolicy(settings.webhook_retry_window_s, settings.webhook_min_backoff_s, settings.webhook_max_backoff_s),
        timeout_s=settings.webhook_timeout_s,
    )

    def reconcile() -> list[str]:
        # The outbox sweep rides on the jobs' pass: this service is the one kept running with CPU.
        ended = app.state.jobs.reconcile()
        return ended + publisher.sweep()

    async with reconciling("jobs and webhook events", reconcile, settings.reconcile_every_s, launcher):
        yield


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()
    return create_service_app(
        DEPLOYABLE,
        settings,
        routers=[
            jobs_api.router,
            models_api.router,
            secrets_api.router,
            api_keys_api.router,
            webhooks_api.router,
            webhooks_api.dispatch_router,
        ],
        lifespan=lifespan,
        path_verifiers={webhooks_api.DISPATCH_PATH: wiring.webhook_dispatch_verifier(settings)},
    )
