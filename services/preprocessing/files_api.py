"""`/v1/files`: the OpenAI files API (purpose `fine-tune`), so the `openai` SDK works unchanged.

A file is a dataset: the same id works here and under `/v1/datasets`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, UploadFile
from fastapi.responses import StreamingResponse

from runtune.api.deps import CurrentUser, Pagination
from runtune.schemas.common import Deleted, ListPage
from runtune.schemas.datasets import FileObject, TaskKind
from services.preprocessing.deps import Datasets

router = APIRouter(prefix="/v1/files", tags=["files"])


@router.post("")
def create_file(
    user: CurrentUser,
    datasets: Datasets,
    file: Annotated[UploadFile, File()],
    purpose: Annotated[str, Form()],
    # Runtune's extension (the SDK sends it with `extra_body`): detected when absent or `auto`.
    task_kind: Annotated[TaskKind | Literal["auto"] | None, Form()] = None,
) -> FileObject:
    task = None if task_kind == "auto" else task_kind
    dataset = datasets.create_file(user.uid, file.filename or "upload.jsonl", purpose, file.file, file.size, task)
    return dataset.as_file()


@router.get("")
def list_files(user: CurrentUser, datasets: Datasets, page: Pagination) -> ListPage[FileObject]:
    found = datasets.list(user.uid, limit=page.limit, after=page.after, kind="file")
    return ListPage[FileObject](
        data=[d.as_file() for d in found.data], has_more=found.has_more, first_id=found.first_id, last_id=found.last_id
    )


@router.get("/{file_id}")
def retrieve_file(file_id: str, user: CurrentUser, datasets: Datasets) -> FileObject:
    return datasets.get(user.uid, file_id, "file").as_file()


@router.get("/{file_id}/content")
def file_content(file_id: str, user: CurrentUser, datasets: Datasets) -> StreamingResponse:
    path = datasets.file_content_path(user.uid, file_id)
    return StreamingResponse(datasets.blob_chunks(path), media_type="application/octet-stream")


@router.delete("/{file_id}", response_model=Deleted)
def delete_file(file_id: str, user: CurrentUser, datasets: Datasets) -> Deleted:
    datasets.delete(user.uid, file_id, "file")
    return Deleted(id=file_id, object="file")
