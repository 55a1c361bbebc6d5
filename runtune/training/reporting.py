"""Reporting through the metadata port: the job document (status, phase, progress, heartbeat) and
its event log (messages and batched metrics events), plus the cancel flag the jobs API sets.

Writes stay well inside Firestore's limits: progress is written at most every `progress_every_s`,
metrics events are buffered and flushed as one batch at most every `flush_every_s` (and whenever a
checkpoint is saved, so the events of every checkpointed step are durable), the cancel flag is read
at most every `cancel_every_s`, and a background thread writes the heartbeat every `heartbeat_every_s`
whatever the trainer is busy with (a model download, a long evaluation, a merge), so the jobs API's
reconciler never mistakes a slow phase for a dead trainer.

A resumed attempt recomputes the steps after its checkpoint; their metrics events may already be in
the log (flushed before the earlier attempt was killed), so the reporter skips steps already
reported: the training curve has exactly one point per step.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from runtune.jobs.events import JobEventLog, Level, NewEvent
from runtune.ports.metadata import MetadataStore
from runtune.schemas.common import ApiError
from runtune.schemas.jobs import JobPhase, JobStatus, job_path

log = logging.getLogger("runtune.trainer")


class JobReporter:
    def __init__(
        self,
        store: MetadataStore,
        job_id: str,
        *,
        progress_every_s: float = 5.0,
        flush_every_s: float = 10.0,
        cancel_every_s: float = 5.0,
        heartbeat_every_s: float = 10.0,
    ) -> None:
        self._store, self._job_id = store, job_id
        self._events = JobEventLog(store)
        self._buffer: list[NewEvent] = []
        self._progress_every_s, self._flush_every_s, self._cancel_every_s = (
            progress_every_s,
            flush_every_s,
            cancel_every_s,
        )
        self._heartbeat_every_s = heartbeat_every_s
        self._last_progress = self._last_flush = self._last_cancel_check = 0.0
        self._cancelled = False
        self._reported_through = 0  # metrics events of steps up to this one are already in the log
        self._stop_heartbeat = threading.Event()
        self._heartbeat: threading.Thread | None = None
        self._closers: list[Any] = []

    # -- the job document ------------------------------------------------------------------------

    def update(self, **fields: Any) -> None:
        self._store.update(job_path(self._job_id), {"heartbeat_at": time.time(), **fields})

    def start_heartbeat(self) -> None:
        """Write `heartbeat_at` every `heartbeat_every_s` from a daemon thread until `finish`."""
        if self._heartbeat is not None:
            return

        def beat() -> None:
            while not self._stop_heartbeat.wait(self._heartbeat_every_s):
                try:
                    self._store.update(job_path(self._job_id), {"heartbeat_at": time.time()})
                except Exception:  # a missed beat is retried at the next one
                    log.warning("heartbeat write failed", exc_info=True, extra={"job_id": self._job_id})

        self._heartbeat = threading.Thread(target=beat, name="heartbeat", daemon=True)
        self._heartbeat.start()

    def stop_heartbeat(self) -> None:
        self._stop_heartbeat.set()

    def on_close(self, closer: Any) -> None:
        """Run `closer()` once when the attempt ends, however it ends (trackers' final uploads)."""
        self._closers.append(closer)

    def close(self) -> None:
        self.stop_heartbeat()
        while self._closers:
            try:
                self._closers.pop()()
            except Exception:
                log.warning("closing a reporter hook failed", exc_info=True, extra={"job_id": self._job_id})

    def running(self, execution: str | None, attempt: int) -> None:
        # The launcher recorded the execution's name already; a local run without one keeps it.
        changes = {"status": JobStatus.running.value, "heartbeat_at": time.time()}
        if execution:
            changes["execution_name"] = execution

        def apply(current: dict[str, Any] | None) -> dict[str, Any] | None:
            # A job cancelled (or failed) while its trainer started stays ended: never back to running.
            if current is None or JobStatus(current["status"]).is_terminal:
                return None
            return {**current, **changes}

        self._store.transact(job_path(self._job_id), apply)
        self.start_heartbeat()
        self.message(f"Trainer started (attempt {attempt + 1})")

    def phase(self, phase: JobPhase, text: str) -> None:
        self.update(phase=phase.value)
        self.message(text)

    def progress(self, step: int, total: int, seconds_remaining: int | None, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last_progress >= self._progress_every_s:
            self._last_progress = now
            self.update(steps_completed=step, total_steps=total, seconds_remaining=seconds_remaining)

    def finish(self, status: JobStatus, text: str, *, error: ApiError | None = None, **fields: Any) -> bool:
        """End the job (unless something else, e.g. the reconciler, ended it first). Returns whether
        this call ended it."""
        self.stop_heartbeat()
        level: Level = "error" if status is JobStatus.failed else "info"
        self._buffer.append(NewEvent(text, level))
        self.flush()
        changes = {
            "status": status.value,
            "finished_at": int(time.time()),
            "heartbeat_at": time.time(),
            "seconds_remaining": 0 if status is JobStatus.succeeded else None,
            "error": error.model_dump() if error else None,
            **fields,
        }

        def apply(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if current is None or JobStatus(current["status"]).is_terminal:
                return None
            return {**current, **changes}

        ended = self._store.transact(job_path(self._job_id), apply) is not None
        if not ended:
            log.warning("the job had already ended; its status is kept", extra={"job_id": self._job_id})
        return ended

    # -- events ----------------------------------------------------------------------------------

    def message(self, text: str, *, level: Level = "info") -> None:
        self._buffer.append(NewEvent(text, level))
        log.info(text, extra={"job_id": self._job_id})
        self.flush()

    def metrics(self, step: int, data: dict[str, Any]) -> None:
        if step <= self._reported_through:
            return  # recomputed after a resume: the earlier attempt's point stands
        self._buffer.append(NewEvent(f"Step {step}", type="metrics", data={"step": step, **data}))
        if time.monotonic() - self._last_flush >= self._flush_every_s:
            self.flush()

    def checkpointed(self, step: int, total: int, seconds_remaining: int | None) -> None:
        """Before a checkpoint's document is written: the job shows the step, and every metrics event
        up to it is in the log (what a resumed attempt does not report again)."""
        self.progress(step, total, seconds_remaining, force=True)
        self.flush()

    def flush(self) -> None:
        if self._buffer:
            self._events.append(self._job_id, self._buffer)
            self._buffer = []
        self._last_flush = time.monotonic()

    def resume_reporting(self) -> int:
        """After a resume: the newest step the log already has a metrics event for (0 if none);
        `metrics` skips those steps from now on."""
        after: int | None = None
        while True:
            page = self._events.read(self._job_id, after_seq=after, limit=200, newest_first=True)
            for event in page:
                if event.type == "metrics" and event.data and "step" in event.data:
                    self._reported_through = int(event.data["step"])
                    return self._reported_through
            if len(page) < 200:
                return 0
            after = page[-1].seq

    # -- the cancel flag -------------------------------------------------------------------------

    def cancel_requested(self, *, force: bool = False) -> bool:
        now = time.monotonic()
        if not self._cancelled and (force or now - self._last_cancel_check >= self._cancel_every_s):
            self._last_cancel_check = now
            document = self._store.get(job_path(self._job_id)) or {}
            self._cancelled = bool(document.get("cancel_requested"))
        return self._cancelled
