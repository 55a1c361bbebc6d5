"""One dataset's ingestion, as an execution of its own: `python -m jobs.ingest <dataset_id>` (that
deployable composes the stores and runs `DatasetIngestion`).

The preprocessing service answers the create call (202), stores what to read on the dataset
(`Dataset.ingest`) and launches this through the launcher port: a Cloud Run job execution in the
cloud, a child process of the local launcher on a workstation. So a huge or hostile file can only
exhaust its own execution's memory, CPU or time; the service reconciles a dataset whose execution
stopped without finishing it (`describe_stop`).

Here: fetch the input, run the ingestion, record the outcome. The dataset ends `ready` or
`failed`; a failed (or meanwhile deleted) dataset has every blob under its prefix removed, so
nothing half-written is left. Progress goes to the dataset document about once a second; that
write also notices a deletion and stops the work.

Exit status: 0 when the execution did its job (the dataset is `ready`, or `failed` because of its
data), or had nothing to do (deleted, already finished); 1 when it crashed (the dataset is marked
failed if the store is reachable, else by the service's reconcile); 2 for a bad invocation;
128 + N when stopped by signal N (the launcher's reason then explains the stop).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from runtune.blob_layout import dataset_prefix, source_path
from runtune.datasets.limits import DatasetLimits
from runtune.datasets.pipeline import IngestOptions, Ingestor, IngestResult, ProgressFn
from runtune.datasets.problems import DataError
from runtune.errors import NotFound
from runtune.owned import OwnedCollection
from runtune.ports.blobs import BlobStore
from runtune.ports.launcher import ExecutionState, ExecutionStatus
from runtune.schemas.common import ApiError, now_ts
from runtune.schemas.datasets import Dataset, DatasetStatus, IngestSpec, Progress

log = logging.getLogger("runtune.ingest")
# Its name in runtune/permissions.py: locally its adapters refuse what its cloud account could not do.
# (owner, secret name) -> the secret's value, or None.
SecretLookup = Callable[[str, str], str | None]
# Called after each progress report (phase, done, total): the tests' seam to hold an ingestion mid-way.
ProgressObserver = Callable[[Dataset, str, int, int | None], None]


class Outcome(StrEnum):
    ready = "ready"
    failed = "failed"  # on its data: the execution did its job
    deleted = "deleted"
    skipped = "skipped"  # nothing to do: gone, or no longer processing
    crashed = "crashed"


class Terminated(BaseException):
    """SIGTERM: the execution is being cancelled (a delete) or timed out. A BaseException, so no
    `except Exception` on the way swallows the stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


class _Deleted(Exception):
    """The dataset was deleted while it was being processed."""


def ingest_options(spec: IngestSpec) -> IngestOptions:
    """The pipeline's options: the spec's fields of the same names (the spec adds what to read)."""
    return IngestOptions(**{option.name: getattr(spec, option.name) for option in dataclasses.fields(IngestOptions)})


class DatasetIngestion:
    def __init__(
        self,
        datasets: OwnedCollection[Dataset],
        blobs: BlobStore,
        secret: SecretLookup,
        limits: DatasetLimits,
        observe: ProgressObserver | None = None,
    ) -> None:
        self._datasets, self._blobs, self._secret, self._limits = datasets, blobs, secret, limits
        self._observe = observe

    def run(self, dataset: Dataset) -> Outcome:
        started = time.monotonic()
        workdir = Path(tempfile.mkdtemp(prefix="runtune-ingest-"))
        try:
            if dataset.ingest is None:
                raise RuntimeError("the dataset stores no ingestion inputs")
            result = self._ingest(dataset, dataset.ingest, workdir)
            if not self._finish(dataset, result):
                # Failed meanwhile (the service saw this execution as gone): that verdict stands.
                self._clean(dataset)
                log.warning("dataset ended while processing; result dropped", extra={"dataset_id": dataset.id})
                return Outcome.skipped
            log.info(
                "dataset ready",
                extra={
                    "dataset_id": dataset.id,
                    "uid": dataset.owner,
                    "rows": result.stats["rows"],
                    "seconds": round(time.monotonic() - started, 2),
                },
            )
            return Outcome.ready
        except _Deleted:
            self._clean(dataset)
            log.info("dataset deleted while processing", extra={"dataset_id": dataset.id})
            return Outcome.deleted
        except DataError as exc:
            self._fail(dataset, exc.code or "invalid_data", exc.message, exc.param)
            return Outcome.failed
        except Terminated:
            # Cancelled (the dataset is being deleted) or out of time: leave nothing half-written;
            # the service records why from the execution's own status.
            self._clean(dataset)
            raise
        except Exception:
            log.exception("dataset processing failed", extra={"dataset_id": dataset.id, "uid": dataset.owner})
            self._fail(dataset, "server_error", "processing failed unexpectedly; the team has the details", None)
            return Outcome.crashed
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def _ingest(self, dataset: Dataset, spec: IngestSpec, workdir: Path) -> IngestResult:
        ingestor = Ingestor(
            self._blobs,
            dataset.owner,
            dataset.id,
            limits=self._limits,
            workdir=workdir,
            progress=self._reporter(dataset),
        )
        options = ingest_options(spec)
        if spec.hub is not None:
            name = spec.hub.token_secret
            # The token goes from the secret store to the Hub client and nowhere else.
            token = self._secret(dataset.owner, name) if name else None
            return ingestor.ingest_hub(spec.hub, token, options)
        assert spec.object_path and spec.filename
        self._report(dataset, "downloading", 0, None)
        local = workdir / "input" / Path(spec.filename).name
        try:
            self._blobs.download_file(spec.object_path, local)
        except NotFound as exc:
            raise DataError("the uploaded file is gone (was the upload deleted?)", None, code="upload_missing") from exc
        # The dataset keeps its own copy of its source: upload objects are temporary (the bucket's
        # lifecycle deletes them a day after the upload expires).
        kept = source_path(dataset.owner, dataset.id, spec.filename)
        if spec.object_path != kept:
            self._blobs.upload_file(kept, local)
        return ingestor.ingest_file(local, spec.filename, options)

    def _reporter(self, dataset: Dataset) -> ProgressFn:
        def report(phase: str, done: int, total: int | None) -> None:
            self._report(dataset, phase, done, total)

        return report

    def _report(self, dataset: Dataset, phase: str, done: int, total: int | None) -> None:
        progress = Progress(phase=phase, done=done, total=total, updated_at=now_ts())
        try:
            self._datasets.update(dataset.id, {"progress": progress.model_dump(mode="json")})
        except NotFound as exc:
            raise _Deleted from exc
        if self._observe is not None:
            self._observe(dataset, phase, done, total)

    def _finish(self, dataset: Dataset, result: IngestResult) -> bool:
        """Mark the dataset ready, only if it is still `processing`: a terminal state is never
        changed (a dataset the service failed does not flip back). Returns whether it was marked."""
        # What the dataset keeps in storage (source copy, shards, previews): its owner's storage quota.
        stored = sum(info.size for info in self._blobs.list(dataset_prefix(dataset.owner, dataset.id)))
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
            "stored_bytes": stored,
        }

        def apply(current: Dataset) -> Dataset | None:
            if current.status is not DatasetStatus.processing:
                return None
            return Dataset.model_validate({**current.to_document(), **fields})

        if self._datasets.update_if(dataset.id, apply) is not None:
            return True
        if self._datasets.get(dataset.id) is None:
            raise _Deleted
        return False

    def _fail(self, dataset: Dataset, code: str, message: str, param: str | None) -> None:
        log.info("dataset failed", extra={"dataset_id": dataset.id, "uid": dataset.owner, "code": code})
        self._clean(dataset)
        error = ApiError(code=code, message=message, param=param)
        # Atomically, with its `dataset.failed` webhook event; a dataset deleted meanwhile stays deleted.
        self._datasets.update_if(
            dataset.id,
            lambda current: current.model_copy(
                update={"status": DatasetStatus.failed, "error": error, "progress": None}
            ),
        )

    def _clean(self, dataset: Dataset) -> None:
        self._blobs.delete_prefix(dataset_prefix(dataset.owner, dataset.id))


# -- the service's side: why an execution stopped, in the user's words ---------------------------


def describe_stop(status: ExecutionStatus) -> ApiError:
    """The error of a dataset whose execution ended while the dataset was still `processing`.

    Both launchers word their reasons alike (`timeout after Ns`, `exit code N`, `killed by signal
    SIGKILL`); Cloud Run's own failure message (an exceeded memory limit) is passed through.
    """
    reason = status.reason or ""
    if status.state is ExecutionState.cancelled:
        return _stopped("ingestion_cancelled", "its execution was cancelled")
    if reason.startswith("timeout"):
        seconds = reason.removeprefix("timeout").removeprefix(" after ").strip()
        detail = f"timed out after {seconds}" if seconds else "timed out"
        return _stopped("ingestion_timeout", f"{detail}; split the data into smaller datasets")
    if "memory" in reason.lower():
        return _stopped("ingestion_out_of_memory", f"out of memory ({reason}); split the data into smaller files")
    signum = _signal_of(status)
    if signum == signal.SIGKILL:
        return _stopped(
            "ingestion_killed",
            "killed by signal SIGKILL (most often out of memory: split the data into smaller files)",
        )
    if signum is not None:
        return _stopped("ingestion_killed", f"killed by signal {_signal_name(signum)}")
    if status.exit_code is not None and status.exit_code != 0:
        return _stopped("ingestion_crashed", f"exited with code {status.exit_code}")
    if status.state is ExecutionState.succeeded:
        return _stopped("ingestion_lost", "its execution ended without recording a result")
    if status.state is ExecutionState.unknown:
        return _stopped("ingestion_lost", f"its execution is gone ({reason or 'unknown'})")
    return _stopped("ingestion_failed", reason or "its execution failed")


def never_started() -> ApiError:
    """A dataset left `processing` with no execution (the service stopped between its two writes)."""
    return _stopped("ingestion_lost", "it never started (the service restarted)")


def launch_failed(detail: str) -> ApiError:
    return ApiError(
        code="ingestion_not_started", message=f"ingestion could not be started: {detail}; create the dataset again"
    )


def _stopped(code: str, why: str) -> ApiError:
    return ApiError(code=code, message=f"ingestion stopped: {why}; create the dataset again to retry")


def _signal_of(status: ExecutionStatus) -> int | None:
    # The local launcher says "killed by signal SIGKILL"; containers exit with 128 + N.
    if status.reason and status.reason.startswith("killed by signal "):
        name = status.reason.removeprefix("killed by signal ")
        with contextlib.suppress(KeyError):
            return int(signal.Signals[name])
    if status.exit_code is not None and 128 < status.exit_code < 128 + 65:
        return status.exit_code - 128
    return None


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
