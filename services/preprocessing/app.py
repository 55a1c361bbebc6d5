"""The preprocessing service (private: reached only through the gateway): uploads, files, datasets."""

from __future__ import annotations

from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI

from runtune import wiring
from runtune.api.service_app import create_service_app
from runtune.datasets.limits import DatasetLimits
from runtune.owned import datasets as dataset_collection
from runtune.settings import ServiceSettings
from services.preprocessing import datasets_api, files_api, uploads_api
from services.preprocessing.processing import DatasetProcessor
from services.preprocessing.repository import upload_collection
from services.preprocessing.service import DatasetService

# Its name in runtune/permissions.py: locally its adapters refuse what its cloud account could not do.
DEPLOYABLE = "preprocessing"

# Datasets are processed one at a time per instance, each with `DatasetLimits.workers` image
# threads: CPU-bound work gains nothing from more on a small instance, and memory stays bounded.
PROCESSING_SLOTS = 1


def create_app(settings: ServiceSettings | None = None) -> FastAPI:
    settings = settings or ServiceSettings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = wiring.metadata_store(settings, deployable=DEPLOYABLE)
        blobs = wiring.blob_store(settings, deployable=DEPLOYABLE)
        limits = DatasetLimits()
        datasets = dataset_collection(store)
        processor = DatasetProcessor(datasets, blobs, wiring.secret_store(settings, deployable=DEPLOYABLE), limits)
        with ThreadPoolExecutor(PROCESSING_SLOTS, thread_name_prefix="dataset") as pool:
            app.state.datasets = DatasetService(
                datasets, upload_collection(store), blobs, limits, submit=lambda job: pool.submit(processor.run, job)
            )
            yield
            pool.shutdown(wait=False, cancel_futures=True)

    routers = [files_api.router, uploads_api.router, datasets_api.router]
    return create_service_app(DEPLOYABLE, settings, routers=routers, lifespan=lifespan)
