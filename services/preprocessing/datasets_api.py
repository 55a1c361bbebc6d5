"""`/v1/datasets`: create (from an upload or the Hub), list, get, samples, stats, download, retry,
delete."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, status

from runtune.api.deps import CurrentUser, Pagination
from runtune.schemas.common import Deleted, ListPage, WholeList
from runtune.schemas.datasets import CreateDatasetRequest, Dataset, DatasetShard, DatasetStats, Sample
from services.preprocessing.deps import Datasets

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post("", status_code=status.HTTP_202_ACCEPTED)
def create_dataset(body: CreateDatasetRequest, user: CurrentUser, datasets: Datasets) -> Dataset:
    return datasets.create_dataset(user.uid, body)


@router.get("")
def list_datasets(user: CurrentUser, datasets: Datasets, page: Pagination) -> ListPage[Dataset]:
    return datasets.list(user.uid, limit=page.limit, after=page.after)


@router.get("/{dataset_id}")
def get_dataset(dataset_id: str, user: CurrentUser, datasets: Datasets) -> Dataset:
    return datasets.get(user.uid, dataset_id)


@router.get("/{dataset_id}/samples")
def dataset_samples(
    dataset_id: str,
    user: CurrentUser,
    datasets: Datasets,
    page: Pagination,
    split: Annotated[Literal["train", "validation", "test"], Query()] = "train",
) -> ListPage[Sample]:
    return datasets.samples(user.uid, dataset_id, split, limit=page.limit, after=page.after)


@router.get("/{dataset_id}/stats", response_model=DatasetStats, response_model_exclude_unset=True)
def dataset_stats(dataset_id: str, user: CurrentUser, datasets: Datasets) -> dict[str, Any]:
    return datasets.stats(user.uid, dataset_id)


@router.get("/{dataset_id}/download", response_model=WholeList[DatasetShard])
def dataset_download(dataset_id: str, user: CurrentUser, datasets: Datasets) -> WholeList[DatasetShard]:
    return datasets.download(user.uid, dataset_id)


@router.post("/{dataset_id}/retry", status_code=status.HTTP_202_ACCEPTED)
def retry_dataset(dataset_id: str, user: CurrentUser, datasets: Datasets) -> Dataset:
    return datasets.retry(user.uid, dataset_id)


@router.delete("/{dataset_id}", response_model=Deleted)
def delete_dataset(dataset_id: str, user: CurrentUser, datasets: Datasets) -> Deleted:
    datasets.delete(user.uid, dataset_id)
    return Deleted(id=dataset_id, object="dataset.deleted")
