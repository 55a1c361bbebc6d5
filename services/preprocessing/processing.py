"""Background processing of one dataset: fetch the input, run the ingestion, record the outcome.

Runs on the service's worker pool after the create call has answered 202. The dataset ends
`ready` or `failed`; a failed (or meanwhile deleted) dataset has every blob under its prefix
removed, so nothing half-written is left. Progress goes to the dataset document about once a
second; that write also notices a deletion and stops the work.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from runtune.datasets.canonical import dataset_prefix
from runtune.datasets.limits import DatasetLimits
from runtune.datasets.pipeline import IngestOptions, Ingestor, IngestResult, ProgressFn
from runtune.datasets.problems import DataError
from runtune.errors import NotFound
from runtune.owned import OwnedCollection
from runtune.ports.blobs import BlobStore
from runtune.ports.secrets import SecretStore
from runtune.schemas.common import ApiError, now_ts
from runtune.schemas.datasets import Dataset, DatasetStatus, HubSource, Progress
from services.preprocessing.repository import source_path

log = logging.getLogger("runtune.preprocessing")


class _Deleted(Exception):
    """The dataset was deleted while it was being processed."""


@dataclass(frozen=True)
class ProcessRequest:
    uid: str
    dataset_id: str
    options: IngestOptions
    # Exactly one: an object in the bucket (an upload or a /v1/files body), or a Hub dataset.
    object_path: str | None = None
    filename: str | None = None
    hub: HubSource | None = None


class DatasetProcessor:
    def __init__(
        self, datasets: OwnedCollection[Dataset], blobs: BlobStore, secrets: SecretStore, limits: DatasetLimits
    ) -> None:
        self._datasets, self._blobs, self._secrets, self._limits = datasets, blobs, secrets, limits

    def run(self, request: ProcessRequest) -> None:
        started = time.monotonic()
        workdir = Path(tempfile.mkdtemp(prefix="runtune-ingest-"))
        try:
            result = self._ingest(request, workdir)
            self._finish(request, result)
            log.info(
                "dataset ready",
                extra={
                    "dataset_id": request.dataset_id,
                    "uid": request.uid,
                    "rows": result.stats["rows"],
                    "seconds": round(time.monotonic() - started, 2),
                },
            )
        except _Deleted:
            self._clean(request)
            log.info("dataset deleted while processing", extra={"dataset_id": request.dataset_id})
        except DataError as exc:
            self._fail(request, exc.code or "invalid_data", exc.message, exc.param)
        except Exception:
            log.exception("dataset processing failed", extra={"dataset_id": request.dataset_id, "uid": request.uid})
            self._fail(request, "server_error", "processing failed unexpectedly; the team has the details", None)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _ingest(self, request: ProcessRequest, workdir: Path) -> IngestResult:
        ingestor = Ingestor(
            self._blobs,
            request.uid,
            request.dataset_id,
            limits=self._limits,
            workdir=workdir,
            progress=self._reporter(request.dataset_id),
        )
        if request.hub is not None:
            name = request.hub.token_secret
            # The token goes from the secret store to the Hub client and nowhere else.
            token = self._secrets.get(request.uid, name) if name else None
            return ingestor.ingest_hub(request.hub, token, request.options)
        assert request.object_path and request.filename
        self._report(request.dataset_id, "downloading", 0, None)
        local = workdir / "input" / Path(request.filename).name
        try:
            self._blobs.download_file(request.object_path, local)
        except NotFound as exc:
            raise DataError("the uploaded file is gone (was the upload deleted?)", None, code="upload_missing") from exc
        # The dataset keeps its own copy of its source: upload objects are temporary (the bucket's
        # lifecycle deletes them a day after the upload expires).
        kept = source_path(request.uid, request.dataset_id, request.filename)
        if request.object_path != kept:
            self._blobs.upload_file(kept, local)
        return ingestor.ingest_file(local, request.filename, request.options)

    def _reporter(self, dataset_id: str) -> ProgressFn:
        def report(phase: str, done: int, total: int | None) -> None:
            self._report(dataset_id, phase, done, total)

        return report

    def _report(self, dataset_id: str, phase: str, done: int, total: int | None) -> None:
        progress = Progress(phase=phase, done=done, total=total, updated_at=now_ts())
        try:
            self._datasets.update(dataset_id, {"progress": progress.model_dump(mode="json")})
        except NotFound as exc:
            raise _Deleted from exc

    def _finish(self, request: ProcessRequest, result: IngestResult) -> None:
        fields = {
            "status": DatasetStatus.ready.value,
            "task_kind": result.task_kind.value,
            "modality": result.modality,
            "splits": result.splits,
            "labels": result.labels,
            "label_counts": result.label_counts,
            "warnings": result.warnings,
            "stats": result.stats | {"input_kind": result.kind.value, "shards": len(result.shards)},
            "progress": Progress(
                phase="done", done=result.stats["rows"], total=result.stats["rows"], updated_at=now_ts()
            ).model_dump(mode="json"),
        }
        try:
            self._datasets.update(request.dataset_id, fields)
        except NotFound as exc:
            raise _Deleted from exc

    def _fail(self, request: ProcessRequest, code: str, message: str, param: str | None) -> None:
        log.info("dataset failed", extra={"dataset_id": request.dataset_id, "uid": request.uid, "code": code})
        self._clean(request)
        error = ApiError(code=code, message=message, param=param)
        with contextlib.suppress(NotFound):  # deleted meanwhile: nothing left to mark
            self._datasets.update(
                request.dataset_id,
                {"status": DatasetStatus.failed.value, "error": error.model_dump(mode="json"), "progress": None},
            )

    def _clean(self, request: ProcessRequest) -> None:
        self._blobs.delete_prefix(dataset_prefix(request.uid, request.dataset_id))
