"""The preprocessing service's decisions: uploads, datasets (and their `file` view), samples, deletion.

Endpoints parse and authorize; this module decides; the repositories talk to storage. Every
read goes through the caller's uid, so another user's resource is a 404, and a dataset can only
be made from the caller's own upload: the object path is derived here, never taken from a client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, BinaryIO

from runtune import quotas
from runtune.blob_layout import dataset_prefix, safe_filename, source_path, upload_folder, upload_prefix
from runtune.datasets.canonical import SHARD_PATTERN
from runtune.datasets.detect import check_supported
from runtune.datasets.ingest_execution import describe_stop, launch_failed, never_started
from runtune.datasets.limits import DatasetLimits
from runtune.datasets.previews import PREVIEW_PAGE_ROWS, read_preview_page, sample_id
from runtune.errors import Conflict, InvalidRequest, NotFound, PayloadTooLarge
from runtune.owned import OwnedCollection
from runtune.ports.blobs import BlobStore
from runtune.ports.launcher import ExecutionState, JobLauncher, LaunchRequest, Workload
from runtune.quotas import Quotas
from runtune.schemas.common import ApiError, Deleted, ListPage, WholeList, ascii_number, new_id, now_ts
from runtune.schemas.datasets import (
    CreateDatasetRequest,
    CreateUploadRequest,
    Dataset,
    DatasetShard,
    DatasetStatus,
    IngestSpec,
    Progress,
    Sample,
    TaskKind,
    Upload,
    UploadStatus,
)

log = logging.getLogger("runtune.preprocessing")

UPLOAD_TTL_S = 7 * 24 * 3600
SIGNED_URL_TTL = timedelta(minutes=15)
# The execution name a launch claim holds until the launcher answers with the real one.
LAUNCHING = "launching"


@dataclass(frozen=True)
class IngestPolicy:
    """How ingestion executions are run and followed."""

    task_timeout_s: int
    # A `processing` dataset whose execution has not reported progress for this long is checked
    # against the execution (progress comes about once a second while rows flow).
    check_after_s: float = 5.0
    # A launch claimed this long ago and never recorded was cut off between its two writes.
    never_started_after_s: float = 15 * 60
    # Ingestions launched at once, all users together; the others wait their turn (`fair_turns`).
    max_concurrent: int = 20


class DatasetService:
    def __init__(
        self,
        datasets: OwnedCollection[Dataset],
        uploads: OwnedCollection[Upload],
        blobs: BlobStore,
        limits: DatasetLimits,
        launcher: JobLauncher,
        policy: IngestPolicy,
        *,
        launch_env: dict[str, str] | None = None,
        quotas: Quotas | None = None,
    ) -> None:
        self.datasets, self.uploads = datasets, uploads
        self._blobs, self._limits = blobs, limits
        self._launcher, self._policy, self._launch_env = launcher, policy, launch_env or {}
        self._quotas = quotas or Quotas()

    # -- uploads ----------------------------------------------------------------------------------

    def create_upload(self, uid: str, request: CreateUploadRequest, origin: str | None) -> Upload:
        self._check_file(request.filename, request.bytes, self._limits.max_upload_bytes)
        quotas.check_storage(self.datasets.store, uid, self._quotas, request.bytes, new_dataset=False)
        upload_id = new_id("upload")
        upload = Upload(
            id=upload_id,
            owner=uid,
            filename=request.filename,
            bytes=request.bytes,
            mime_type=request.mime_type,
            purpose=request.purpose,
            expires_at=now_ts() + UPLOAD_TTL_S,
            object_path=upload_prefix(uid, upload_id) + safe_filename(request.filename),
        )
        self.uploads.create(upload)
        # Octet-stream whatever the file: the storage emulator would parse a JSON type's body.
        url = self._blobs.resumable_upload_url(
            upload.object_path, content_type="application/octet-stream", size=request.bytes, origin=origin
        )
        return upload.model_copy(update={"upload_url": url})

    def put_upload_content(self, uid: str, upload_id: str, body: BinaryIO, size: int | None) -> Upload:
        """The direct path for small files: the body comes through the service (under 32 MiB)."""
        upload = self._pending_upload(uid, upload_id)
        if size is not None and size > self._limits.max_direct_upload_bytes:
            raise PayloadTooLarge(
                f"{size:,} bytes is over the direct upload limit of {self._limits.max_direct_upload_bytes:,}; "
                "use the upload_url (resumable) instead",
                param="file",
            )
        if size is not None and size != upload.bytes:
            raise InvalidRequest(f"the upload declared {upload.bytes:,} bytes but {size:,} came", param="file")
        self._blobs.upload_stream(upload.object_path, body)
        return self.complete_upload(uid, upload_id)

    def complete_upload(self, uid: str, upload_id: str) -> Upload:
        upload = self.uploads.get_owned(uid, upload_id)
        if upload.status is UploadStatus.completed:
            return upload
        info = self._blobs.info(upload.object_path)
        got = info.size if info else 0
        if got != upload.bytes:
            raise InvalidRequest(
                f"the upload has {got:,} of its {upload.bytes:,} bytes: finish sending the file first",
                param="upload_id",
                code="upload_incomplete",
            )
        self.uploads.update(upload_id, {"status": UploadStatus.completed.value})
        return upload.model_copy(update={"status": UploadStatus.completed})

    def delete_upload(self, uid: str, upload_id: str) -> Deleted:
        upload = self.uploads.get_owned(uid, upload_id)
        self._blobs.delete_prefix(upload_folder(upload.object_path))
        self.uploads.delete(upload_id)
        return Deleted(id=upload_id, object="upload.deleted")

    def _pending_upload(self, uid: str, upload_id: str) -> Upload:
        upload = self.uploads.get_owned(uid, upload_id)
        if upload.status is not UploadStatus.pending:
            raise Conflict(f"upload '{upload_id}' is already {upload.status.value}", param="upload_id")
        return upload

    def _check_file(self, filename: str, size: int, limit: int) -> None:
        check_supported(filename)
        if size == 0:
            raise InvalidRequest(f"'{filename}' is empty (0 bytes)", param="file", code="empty_file")
        if size > limit:
            raise PayloadTooLarge(f"'{filename}' is {size:,} bytes, over the limit of {limit:,}", param="bytes")

    # -- datasets ---------------------------------------------------------------------------------

    def create_dataset(self, uid: str, request: CreateDatasetRequest) -> Dataset:
        options = {
            "mapping": request.mapping,
            "task_kind": request.task_kind,
            "split": request.split,
            "max_image_side": request.max_image_side,
            "skip_bad_rows": request.skip_bad_rows,
        }
        dataset_id = new_id("file")
        if request.upload_id is not None:
            upload = self.uploads.get_owned(uid, request.upload_id)
            if upload.expires_at <= now_ts():
                raise InvalidRequest(
                    f"upload '{upload.id}' has expired: upload the file again", param="upload_id", code="upload_expired"
                )
            if upload.status is not UploadStatus.completed:
                raise Conflict(
                    f"upload '{upload.id}' is not complete: POST /v1/uploads/{upload.id}/complete first",
                    param="upload_id",
                )
            self._check_quotas(uid, upload.bytes)
            spec = IngestSpec(**options, object_path=upload.object_path, filename=upload.filename)
            dataset = self._new_dataset(
                uid,
                dataset_id,
                request.name or upload.filename,
                upload.filename,
                upload.bytes,
                {"kind": "upload", "upload_id": upload.id},
                spec,
            )
        else:
            assert request.hub is not None
            self._check_quotas(uid, 0)
            source = {"kind": "hub", "hub_id": request.hub.id}
            source |= {k: v for k, v in (("config", request.hub.config), ("split", request.hub.split)) if v}
            spec = IngestSpec(**options, hub=request.hub)
            dataset = self._new_dataset(uid, dataset_id, request.name or request.hub.id, None, 0, source, spec)
        return self._queued(dataset)

    def create_file(
        self, uid: str, filename: str, purpose: str, body: BinaryIO, size: int | None, task_kind: TaskKind | None = None
    ) -> Dataset:
        """`POST /v1/files`: the file is kept in the dataset's prefix and processed like an upload
        (its task kind detected unless given)."""
        if purpose != "fine-tune":
            raise InvalidRequest(f"purpose '{purpose}' is not supported; use 'fine-tune'", param="purpose")
        self._check_file(filename, size if size is not None else 1, self._limits.max_direct_upload_bytes)
        self._check_quotas(uid, size or 0)
        dataset_id = new_id("file")
        path = source_path(uid, dataset_id, filename)
        self._blobs.upload_stream(path, body)
        info = self._blobs.info(path)
        stored = info.size if info else 0
        if stored == 0:
            self._blobs.delete(path)
            raise InvalidRequest(f"'{filename}' is empty (0 bytes)", param="file", code="empty_file")
        spec = IngestSpec(object_path=path, filename=filename, task_kind=task_kind)
        return self._queued(self._new_dataset(uid, dataset_id, filename, filename, stored, {"kind": "file"}, spec))

    def _check_quotas(self, uid: str, adding: int) -> None:
        """Before a dataset is stored: its owner's datasets processing, datasets kept and bytes stored."""
        quotas.check_processing_datasets(self.datasets.store, uid, self._quotas)
        quotas.check_storage(self.datasets.store, uid, self._quotas, adding, new_dataset=True)

    def _new_dataset(
        self,
        uid: str,
        dataset_id: str,
        name: str,
        filename: str | None,
        size: int,
        source: dict[str, str],
        spec: IngestSpec,
    ) -> Dataset:
        dataset = Dataset(
            id=dataset_id,
            owner=uid,
            name=name,
            filename=filename,
            bytes=size,
            source=source,
            status=DatasetStatus.processing,
            progress={"phase": "queued", "updated_at": now_ts()},
            ingest=spec,
            queued_at=time.time(),
        )
        self.datasets.create(dataset)
        return dataset

    def _queued(self, dataset: Dataset) -> Dataset:
        """A new dataset waits its turn (it may start at once); the answer (202) shows what was stored."""
        self.dispatch()
        return self.datasets.get(dataset.id) or dataset

    # -- fair scheduling: ingestions start round-robin across users --------------------------------

    def dispatch(self) -> None:
        """Launch waiting datasets while fewer than `max_concurrent` ingestions run, the next turn
        always to the user with the fewest running (`fair_turns`): one user's queue cannot hold
        another's dataset back. Several instances may dispatch at once: each launch is claimed in a
        transaction (never twice), and the bound may be passed by at most one launch per instance."""
        processing = self.datasets.where_equal("status", DatasetStatus.processing.value)
        launched = [dataset for dataset in processing if dataset.execution_name]
        waiting = [dataset for dataset in processing if not dataset.execution_name]
        free = self._policy.max_concurrent - len(launched)
        for dataset in quotas.fair_turns(waiting, launched, free, lambda d: d.queued_at or d.created_at):
            try:
                self._launch(dataset)
            except NotFound:  # deleted meanwhile
                continue

    def _launch(self, dataset: Dataset) -> None:
        """Claim the dataset's launch (a transaction: two instances never launch it twice), start
        its ingestion execution, record the execution."""

        def claim(current: Dataset) -> Dataset | None:
            if current.status is not DatasetStatus.processing or current.execution_name:
                return None
            return current.model_copy(
                update={"execution_name": LAUNCHING, "progress": Progress(phase="launching", updated_at=now_ts())}
            )

        if self.datasets.update_if(dataset.id, claim) is None:
            return
        request = LaunchRequest(
            job_id=dataset.id,
            workload=Workload.ingest,
            env=self._launch_env,
            timeout_seconds=self._policy.task_timeout_s,
        )
        try:
            execution = self._launcher.launch(request)
        except Exception as exc:  # the launcher's own errors carry no secrets
            log.exception("ingestion launch failed", extra={"dataset_id": dataset.id})
            self._fail(dataset, launch_failed(str(exc)))
            return
        try:
            self.datasets.update(dataset.id, {"execution_name": execution})
        except NotFound:
            # Deleted before its execution was recorded: stop what was just started.
            self._launcher.cancel(execution)
            raise
        log.info("ingestion launched", extra={"dataset_id": dataset.id, "execution": execution})

    def get(self, uid: str, dataset_id: str, kind: str = "dataset") -> Dataset:
        dataset = self.datasets.get_owned(uid, dataset_id, kind)
        if dataset.status is DatasetStatus.processing and dataset.execution_name is None:
            # Waiting its turn: a slot may have freed since the last pass.
            self.dispatch()
            dataset = self.datasets.get_owned(uid, dataset_id, kind)
        return self.reconciled(dataset)

    def list(self, uid: str, *, limit: int, after: str | None, kind: str = "dataset") -> ListPage[Dataset]:
        items = self.datasets.list_owned(uid, limit=limit + 1, after=after, kind=kind)
        return ListPage.from_overfetch([self.reconciled(d) for d in items], limit)

    # -- reconcile: no dataset stays `processing` once its execution is gone ---------------------

    def reconcile(self) -> list[str]:
        """Fail every `processing` dataset whose execution ended without finishing it (a kill, an
        out-of-memory, a timeout), then start what waits in the freed slots: the periodic pass, for
        datasets nobody reads. Returns the ids of those it failed."""
        processing = self.datasets.where_equal("status", DatasetStatus.processing.value)
        failed = [d.id for d in processing if self.reconciled(d).status is DatasetStatus.failed]
        self.dispatch()
        return failed

    def reconciled(self, dataset: Dataset, now: float | None = None) -> Dataset:
        """The dataset as it stands: failed, with the reason, if its execution stopped without
        finishing it. Reads call this, so a reader never waits on a dead ingestion."""
        if dataset.status is not DatasetStatus.processing:
            return dataset
        now = time.time() if now is None else now
        reported = dataset.progress.updated_at if dataset.progress and dataset.progress.updated_at else None
        quiet_for = now - (reported or dataset.created_at)
        if dataset.execution_name is None:
            return dataset  # waiting its turn: never failed for waiting
        if dataset.execution_name == LAUNCHING:
            if quiet_for < self._policy.never_started_after_s:
                return dataset  # being launched right now
            return self._fail(dataset, never_started())
        if quiet_for < self._policy.check_after_s:
            return dataset
        try:
            status = self._launcher.status(dataset.execution_name)
        except Exception:  # cannot tell now (the Run API is unreachable): the next read asks again
            log.exception("ingestion status unavailable", extra={"dataset_id": dataset.id})
            return dataset
        if status.state in (ExecutionState.pending, ExecutionState.running):
            return dataset
        log.warning(
            "ingestion stopped without finishing",
            extra={
                "dataset_id": dataset.id,
                "execution": status.name,
                "state": str(status.state),
                "reason": status.reason,
                "exit_code": status.exit_code,
            },
        )
        return self._fail(dataset, describe_stop(status))

    def _fail(self, dataset: Dataset, error: ApiError) -> Dataset:
        """Mark a dataset failed unless it finished meanwhile (its execution writes it too)."""

        def apply(current: Dataset) -> Dataset | None:
            if current.status is not DatasetStatus.processing:
                return None
            return current.model_copy(update={"status": DatasetStatus.failed, "error": error, "progress": None})

        changed = self.datasets.update_if(dataset.id, apply)
        if changed is None:
            return self.datasets.get(dataset.id) or dataset
        # Nothing half-written stays (the execution could not clean up after itself).
        self._blobs.delete_prefix(dataset_prefix(dataset.owner, dataset.id))
        return changed

    def retry(self, uid: str, dataset_id: str) -> Dataset:
        """`POST /v1/datasets/{id}/retry`: a failed dataset is processed again from the same source,
        with the same options, under the same id (runs that name it keep working). It waits its turn
        like a new one (`dispatch`)."""
        dataset = self.datasets.get_owned(uid, dataset_id, "dataset")
        if dataset.status is not DatasetStatus.failed:
            raise Conflict(
                f"dataset '{dataset_id}' is {dataset.status.value}: only a failed dataset can be retried",
                param="id",
                code="not_failed",
            )
        spec = dataset.ingest
        if spec is None or (spec.hub is None and (not spec.object_path or self._blobs.info(spec.object_path) is None)):
            # A file sent to `POST /v1/files` lived in the dataset's prefix, emptied when it failed;
            # an upload's object is removed a day after the upload expires.
            raise Conflict(
                f"the source file of dataset '{dataset_id}' is gone: upload it again",
                param="id",
                code="source_missing",
            )
        quotas.check_processing_datasets(self.datasets.store, uid, self._quotas)

        def requeue(current: Dataset) -> Dataset | None:
            if current.status is not DatasetStatus.failed:
                return None  # retried twice at once: the other one requeued it
            return current.model_copy(
                update={
                    "status": DatasetStatus.processing,
                    "error": None,
                    "progress": Progress(phase="queued", updated_at=now_ts()),
                    "execution_name": None,
                    "queued_at": time.time(),
                }
            )

        requeued = self.datasets.update_if(dataset.id, requeue)
        log.info("dataset retried", extra={"dataset_id": dataset.id, "requeued": requeued is not None})
        return self._queued(requeued or dataset)

    def delete(self, uid: str, dataset_id: str, kind: str = "dataset") -> None:
        dataset = self.datasets.get_owned(uid, dataset_id, kind)
        if dataset.status is DatasetStatus.processing and dataset.execution_name not in (None, LAUNCHING):
            # Stop the ingestion first (it removes what it wrote when told to stop), so it is not
            # still writing shards after the prefix is emptied below.
            try:
                self._launcher.cancel(dataset.execution_name)
            except Exception:  # the delete goes on: the execution notices at its next report
                log.exception("ingestion cancel failed", extra={"dataset_id": dataset.id})
        # Document first: an execution still processing it notices at its next report and stops.
        self.datasets.delete(dataset.id)
        self._blobs.delete_prefix(dataset_prefix(uid, dataset.id))
        upload_id = dataset.source.get("upload_id")
        upload = self.uploads.find_owned(uid, upload_id) if upload_id else None
        if upload is not None:
            # The upload was consumed by this dataset: it goes with it (unless its TTL took it already).
            self._blobs.delete_prefix(upload_folder(upload.object_path))
            self.uploads.delete(upload.id)
        if dataset.status is DatasetStatus.processing:
            self.dispatch()  # its slot (or its place in the queue) is free

    # -- what a ready dataset shows -------------------------------------------------------------

    def _ready(self, uid: str, dataset_id: str) -> Dataset:
        dataset = self.get(uid, dataset_id)
        if dataset.status is not DatasetStatus.ready:
            detail = f": {dataset.error.message}" if dataset.error else ""
            raise Conflict(f"dataset '{dataset_id}' is {dataset.status.value}{detail}", param="id", code="not_ready")
        return dataset

    def samples(self, uid: str, dataset_id: str, split: str, *, limit: int, after: str | None) -> ListPage[Sample]:
        dataset = self._ready(uid, dataset_id)
        rows = dataset.splits.get(split, 0)
        start = 0
        if after is not None:
            index = ascii_number(after.removeprefix(f"{split}-")) if after.startswith(f"{split}-") else None
            if index is None:
                raise InvalidRequest(f"'after' must be a sample id of split '{split}'", param="after")
            start = index + 1
        end = min(rows, start + limit)
        items: list[Sample] = []
        for page in range(start // PREVIEW_PAGE_ROWS, (end - 1) // PREVIEW_PAGE_ROWS + 1 if end > start else 0):
            for row in read_preview_page(self._blobs, uid, dataset.id, split, page):
                if start <= row["index"] < end:
                    items.append(Sample.model_validate(row))
        page_items = items[:limit]
        return ListPage(
            data=page_items,
            has_more=end < rows,
            first_id=page_items[0].id if page_items else None,
            last_id=page_items[-1].id if page_items else sample_id(split, start - 1) if start else None,
        )

    def stats(self, uid: str, dataset_id: str) -> dict[str, Any]:
        """The `DatasetStats` fields, as a dict: the ingestion's keys it lacks stay unset (absent)."""
        dataset = self._ready(uid, dataset_id)
        return {
            "object": "dataset.stats",
            "id": dataset.id,
            "task_kind": dataset.task_kind,
            "modality": dataset.modality,
            "splits": dataset.splits,
            "labels": dataset.labels,
            "label_counts": dataset.label_counts,
            "warnings": dataset.warnings,
            **(dataset.stats or {}),
        }

    def download(self, uid: str, dataset_id: str) -> WholeList[DatasetShard]:
        dataset = self._ready(uid, dataset_id)
        prefix = dataset_prefix(uid, dataset.id)
        shards = []
        for info in self._blobs.list(prefix):
            match = SHARD_PATTERN.match(info.path[len(prefix) :])
            if match:
                shards.append(
                    DatasetShard(
                        split=match["split"],
                        name=info.path[len(prefix) :],
                        bytes=info.size,
                        url=self._blobs.signed_download_url(info.path, expires=SIGNED_URL_TTL),
                    )
                )
        return WholeList[DatasetShard](data=shards)

    def blob_chunks(self, path: str) -> Iterator[bytes]:
        return self._blobs.iter_chunks(path)

    def file_content_path(self, uid: str, file_id: str) -> str:
        dataset = self.get(uid, file_id, "file")
        kept = source_path(uid, dataset.id, dataset.filename) if dataset.filename else None
        if kept is not None and (dataset.source.get("kind") == "file" or self._blobs.info(kept) is not None):
            path = kept
        elif dataset.source.get("upload_id"):
            # Datasets made before they kept their own copy read it from their upload.
            path = self.uploads.get_owned(uid, dataset.source["upload_id"]).object_path
        else:
            raise NotFound(f"file '{file_id}' has no stored content", param="id")
        if self._blobs.info(path) is None:
            raise NotFound(f"file '{file_id}' has no stored content (it failed processing)", param="id")
        return path
