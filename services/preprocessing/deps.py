"""Dependencies of the preprocessing endpoints: the service the lifespan built."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.preprocessing.service import DatasetService


def dataset_service(request: Request) -> DatasetService:
    return request.app.state.datasets


Datasets = Annotated[DatasetService, Depends(dataset_service)]
