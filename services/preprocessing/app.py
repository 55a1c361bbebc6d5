"""The preprocessing service (private: reached only through the gateway): uploads, files, datasets.

Dataset ingestion runs as executions of its own (`python -m jobs.ingest`, launched through the
launcher port), never in this process after its answer: a request-serving instance does no work
once it has responded, and one user's file can only exhaust its own execution.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from runtune import wiring
from runtune.api.executions import reconciling
from runtune.api.service_app import create_service_app
from runtune.datasets.limits import DatasetLimits
from runtune.owned import datasets as dataset_collection
from runtune.owned import uploads as upload_collection
from runtune.ports.launcher import Workload
from runtune.ports.metadata import MetadataStore
from runtune.settings import ServiceSettings
from services.preprocessing import datasets_api, files_api, uploads_api
from services.preprocessing.service import DatasetService, IngestPolicy

# Its name in runtune/permissions.py: locally its adapters refuse what its cloud account could not do.
DEPLOYABLE = "preprocessing"


@asynccontextmanager
async def lifespan(app: FastAPI, settings: ServiceSettings, store: MetadataStore) -> AsyncIterator[None]:
    blobs = wiring.blob_store(settings, deployable=DEPLOYABLE)
    launcher = wiring.job_launcher(settings, Workload.ingest)
    app.state.datasets = DatasetService(
        dataset_collection(store),
        upload_collection(store),
        blobs,
        DatasetLimits(),
        launcher,
        IngestPolicy(task_timeout_s=settings.ingest_task_timeout_s, max_concurrent=settings.ingest_concurrency),
        quotas=settings.quotas,
    )
    async with reconciling("datasets", app.state.datasets.reconcile, settings.reconcile_every_s, launcher):
        yield


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    routers = [files_api.router, uploads_api.router, datasets_api.router]
    return create_service_app(DEPLOYABLE, settings or ServiceSettings(), routers=routers, lifespan=lifespan)
