"""`/v1/exports`: take a tuned model away: the adapter as one archive, or the merged 16-bit model
(safetensors + config + processor, loadable by vLLM and transformers), through signed URLs that
expire. URLs are signed afresh on every read and never stored."""

from __future__ import annotations

import io
import re
import tarfile
import time
from datetime import timedelta

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from runtune import tar_stream
from runtune.api.deps import CurrentUser, Pagination
from runtune.blob_layout import MERGED, adapter_archive_path, export_folder
from runtune.errors import Conflict, InvalidRequest
from runtune.inference.resolver import Target
from runtune.outbox import event_for
from runtune.owned import OwnedCollection
from runtune.ports.blobs import BlobStore
from runtune.schemas import ListPage
from runtune.schemas.common import new_id, now_ts
from runtune.schemas.inference import (
    CreateExportRequest,
    Export,
    ExportFile,
    ExportFormat,
    ExportLink,
    ExportStatus,
    Quantization,
)
from services.inference.deps import Inference
from services.inference.executions import Executions

router = APIRouter(prefix="/v1/exports", tags=["inference"])


def _exports(request: Request) -> OwnedCollection[Export]:
    return OwnedCollection(request.app.state.store, "exports", Export, "export")


def _merged_folder(target: Target) -> str:
    assert target.adapter is not None and target.job is not None
    return export_folder(target.job.owner, target.adapter.job_id, MERGED)


def _adapter_archive(blobs: BlobStore, target: Target, uid: str, export_id: str) -> list[ExportFile]:
    assert target.adapter is not None
    folder = target.adapter.prefix.rstrip("/") + "/"  # the final adapter, or a model checkpoint's
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for blob in blobs.list(folder):
            data = blobs.download_bytes(blob.path)
            info = tarfile.TarInfo(f"adapter/{blob.path[len(folder) :]}")
            info.size, info.mtime = len(data), int(time.time())
            archive.addfile(info, io.BytesIO(data))
    path = adapter_archive_path(uid, export_id)
    blobs.upload_bytes(path, buffer.getvalue(), content_type="application/gzip")
    return [ExportFile(path=path, bytes=len(buffer.getvalue()))]


def _merged_files(blobs: BlobStore, target: Target) -> list[ExportFile]:
    if target.adapter is not None and target.adapter.step is not None:
        raise InvalidRequest(
            "A checkpoint is exported as its adapter only (format 'adapter'); the merged model is the job's final one",
            param="format",
        )
    files = [ExportFile(path=blob.path, bytes=blob.size) for blob in blobs.list(_merged_folder(target))]
    if not files:
        raise InvalidRequest(
            "This job exported no merged model (it was trained with export.merged=false); export the adapter",
            param="format",
        )
    return files


def _with_links(export: Export, blobs: BlobStore, ttl_s: int) -> Export:
    if export.status is not ExportStatus.succeeded:
        return export
    expires_at = now_ts() + ttl_s
    prefix = _common_prefix([file.path for file in export.files])
    export.links = [
        ExportLink(
            name=file.path[len(prefix) :],
            bytes=file.bytes,
            url=blobs.signed_download_url(
                file.path, expires=timedelta(seconds=ttl_s), filename=file.path.rsplit("/", 1)[-1]
            ),
            expires_at=expires_at,
        )
        for file in export.files
    ]
    return export


def _common_prefix(paths: list[str]) -> str:
    if len(paths) == 1:
        return paths[0].rsplit("/", 1)[0] + "/"
    folders = [path.split("/") for path in paths]
    shared = []
    for parts in zip(*folders, strict=False):
        if len(set(parts)) != 1:
            break
        shared.append(parts[0])
    return "/".join(shared) + "/"


def _create_with_event(exports: OwnedCollection[Export], export: Export) -> None:
    """The export and its `export.succeeded` webhook event, in one atomic batch."""
    writes = [(exports.path(export.id), export.to_document())]
    if (event := event_for("export", export.status.value, export.id, export.owner)) is not None:
        writes.append(event)
    exports.store.create_many(writes)


def _conversions(request: Request) -> Executions[Export]:
    return request.app.state.conversions


def _converted_before(
    exports: OwnedCollection[Export], uid: str, job_id: str, body: CreateExportRequest
) -> Export | None:
    """A succeeded conversion of the same model to the same format and weights: its files are reused
    (a conversion takes minutes and the files do not change)."""
    for export in exports.where_equal("job_id", job_id, limit=50):
        if (
            export.owner == uid
            and export.status is ExportStatus.succeeded
            and (export.format, export.quantization) == (body.format, body.quantization)
        ):
            return export
    return None


async def _start_conversion(request: Request, body: CreateExportRequest, target: Target, export: Export) -> Export:
    """GGUF and Ollama: the merged model must be there; the conversion runs as its own execution
    (jobs/convert) and the export answers `queued` (poll `GET /v1/exports/{id}`)."""
    inference = request.app.state.inference
    await run_in_threadpool(_merged_files, inference.blobs, target)
    export.quantization = body.quantization or Quantization.q4_k_m
    body = body.model_copy(update={"quantization": export.quantization})
    exports = _exports(request)
    before = await run_in_threadpool(_converted_before, exports, export.owner, export.job_id, body)
    if before is not None:
        export.files, export.status, export.finished_at = before.files, ExportStatus.succeeded, now_ts()
        await run_in_threadpool(_create_with_event, exports, export)
        return await run_in_threadpool(
            _with_links, export, inference.blobs, request.app.state.settings.export_url_ttl_s
        )
    return await run_in_threadpool(_conversions(request).start, export)


@router.post("", response_model=Export)
async def create_export(body: CreateExportRequest, request: Request, user: CurrentUser, inference: Inference) -> Export:
    if body.quantization is not None and not body.format.is_converted:
        raise InvalidRequest(
            f"quantization applies to the 'gguf' and 'ollama' formats, not '{body.format.value}'", param="quantization"
        )
    target = await run_in_threadpool(inference.resolver.resolve, user.uid, body.model)
    if target.adapter is None:
        raise InvalidRequest("Only tuned (`ft:`) models can be exported", param="model")
    export = Export(
        id=new_id("export"), owner=user.uid, job_id=target.adapter.job_id, format=body.format, model=body.model
    )
    if body.format.is_converted:
        return await _start_conversion(request, body, target, export)
    if body.format is ExportFormat.adapter:
        export.files = await run_in_threadpool(_adapter_archive, inference.blobs, target, user.uid, export.id)
    else:
        export.files = await run_in_threadpool(_merged_files, inference.blobs, target)
    export.status, export.finished_at = ExportStatus.succeeded, now_ts()
    await run_in_threadpool(_create_with_event, _exports(request), export)
    return await run_in_threadpool(_with_links, export, inference.blobs, request.app.state.settings.export_url_ttl_s)


@router.get("", response_model=ListPage[Export])
def list_exports(request: Request, user: CurrentUser, page: Pagination) -> ListPage[Export]:
    conversions = _conversions(request)
    found = [
        conversions.reconciled(e)
        for e in _exports(request).list_owned(user.uid, limit=page.limit + 1, after=page.after)
    ]
    return ListPage[Export].from_overfetch(found, page.limit)


@router.get("/{export_id}", response_model=Export)
def get_export(export_id: str, request: Request, user: CurrentUser, inference: Inference) -> Export:
    export = _conversions(request).reconciled(_exports(request).get_owned(user.uid, export_id))
    return _with_links(export, inference.blobs, request.app.state.settings.export_url_ttl_s)


@router.get("/{export_id}/archive")
def export_archive(export_id: str, request: Request, user: CurrentUser, inference: Inference) -> StreamingResponse:
    """The export's files as one uncompressed tar, streamed from the bucket a chunk at a time (a
    merged model is gigabytes: never held in memory or on this instance's disk, which is memory
    too), as an attachment. The signed links of `GET /v1/exports/{id}` are the same files loose."""
    export = _exports(request).get_owned(user.uid, export_id)
    if export.status is not ExportStatus.succeeded:
        raise Conflict(f"Export '{export.id}' is {export.status.value}", param="id", code="export_not_ready")
    blobs = inference.blobs
    prefix = _common_prefix([file.path for file in export.files])
    entries = [
        tar_stream.Entry(
            f"{export.format.value}/{file.path[len(prefix) :]}",
            file.bytes,
            lambda path=file.path: blobs.iter_chunks(path),
        )
        for file in export.files
    ]
    mtime = export.finished_at or export.created_at
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{export.model or export.job_id}-{export.format.value}").strip("-")
    return StreamingResponse(
        tar_stream.stream(entries, mtime),
        media_type="application/x-tar",
        headers={
            "content-disposition": f'attachment; filename="{name}.tar"',
            "content-length": str(tar_stream.archive_size(entries, mtime)),
        },
    )
