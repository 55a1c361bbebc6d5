"""`/v1/uploads`: upload sessions. Large files go straight to the bucket through `upload_url` (a
resumable session: Cloud Run caps request bodies at 32 MiB); small ones may be sent to `/content`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Header, UploadFile

from runtune.api.deps import CurrentUser, Pagination
from runtune.schemas.common import Deleted, ListPage
from runtune.schemas.datasets import CreateUploadRequest, Upload
from services.preprocessing.deps import Datasets

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])


@router.post("")
def create_upload(
    body: CreateUploadRequest, user: CurrentUser, datasets: Datasets, origin: Annotated[str | None, Header()] = None
) -> Upload:
    return datasets.create_upload(user.uid, body, origin)


@router.get("")
def list_uploads(user: CurrentUser, datasets: Datasets, page: Pagination) -> ListPage[Upload]:
    items = datasets.uploads.list_owned(user.uid, limit=page.limit + 1, after=page.after)
    return ListPage.from_overfetch(items, page.limit)


@router.get("/{upload_id}")
def get_upload(upload_id: str, user: CurrentUser, datasets: Datasets) -> Upload:
    return datasets.uploads.get_owned(user.uid, upload_id)


@router.post("/{upload_id}/content")
def upload_content(
    upload_id: str, user: CurrentUser, datasets: Datasets, file: Annotated[UploadFile, File()]
) -> Upload:
    return datasets.put_upload_content(user.uid, upload_id, file.file, file.size)


@router.post("/{upload_id}/complete")
def complete_upload(upload_id: str, user: CurrentUser, datasets: Datasets) -> Upload:
    return datasets.complete_upload(user.uid, upload_id)


@router.delete("/{upload_id}", response_model=Deleted)
def delete_upload(upload_id: str, user: CurrentUser, datasets: Datasets) -> Deleted:
    return datasets.delete_upload(user.uid, upload_id)
