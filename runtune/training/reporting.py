"""Reporting through the metadata port: the job document (status, phase, progress, heartbeat) and
its event log (messages and batched metrics events), plus the stop flags (cancel, pause) the jobs
API sets.

Writes stay well inside Firestore's limits: progress is written at most every `progress_every_s`,
metrics events are buffered and flushed as one batch at most every `flush_every_s` (and whenever a
checkpoint is saved, so the events of every checkpointed step are durable), the stop flags are read
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
from runtune.outbox import on_transition
from runtune.ports.metadata import MetadataStore
from runtune.schemas.common import ApiError
from runtune.schemas.jobs import Job, JobPhase, JobStatus, StopRequest, job_path

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
        self._stop: StopRequest | None = None
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

    def running(self, execution: str | None, attempt: int, processes: int = 1) -> bool:
        """Mark the job `running`; False (and nothing written) when it ended or was paused while its
        trainer started: there is nothing for this trainer to do."""
        # The launcher recorded the execution's name already; a local run without one keeps it.
        changes = {"status": JobStatus.running.value, "heartbeat_at": time.time()}
        if execution:
            changes["execution_name"] = execution

        def apply(current: dict[str, Any] | None) -> dict[str, Any] | None:
            # A job cancelled (or failed, or paused) while its trainer started stays so: never back to running.
            if current is None or not _may_run(JobStatus(current["status"])):
                return None
            return {**current, **changes}

        if self._store.transact(job_path(self._job_id), apply) is None:
            return False
        self.start_heartbeat()
        together = f", {processes} data-parallel processes" if processes > 1 else ""
        self.message(f"Trainer started (attempt {attempt + 1}{together})")
        return True

    def paused(self, text: str) -> bool:
        """Mark the job `paused` (its resume checkpoint saved), if it is still running with a pause
        requested and no cancel. Returns whether the job is paused now; if not, `stop_requested`
        answers what the job asks instead."""
        self.flush()  # every metrics event up to the checkpoint, before the job shows `paused`
        seen: dict[str, Any] = {}

        def apply(current: dict[str, Any] | None) -> dict[str, Any] | None:
            seen.update(current or {})
            if current is None or current["status"] != JobStatus.running.value:
                return None
            if current.get("cancel_requested") or not current.get("pause_requested"):
                return None
            return {
                **current,
                "status": JobStatus.paused.value,
                "pause_requested": False,
                "seconds_remaining": None,
                "heartbeat_at": time.time(),
            }

        if self._store.transact(job_path(self._job_id), apply) is not None:
            self.stop_heartbeat()
            self.message(text)
            return True
        if seen.get("status") == JobStatus.paused.value:
            self.stop_heartbeat()  # paused already: the reconciler marked it while this trainer stopped
            return True
        self._stop = Job.model_validate(seen).stop_requested if seen else None
        return False

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
            if current is None or not _may_run(JobStatus(current["status"])):
                return None
            return {**current, **changes}

        # The job's webhook event is written with its final status (runtune/outbox.py).
        ended = self._store.transact(job_path(self._job_id), apply, also=on_transition("job")) is not None
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
                if event.type == "metrics" and event.data is not None:
                    self._reported_through = event.data.step
                    return self._reported_through
            if len(page) < 200:
                return 0
            after = page[-1].seq

    # -- the stop flags --------------------------------------------------------------------------

    def stop_requested(self, *, force: bool = False) -> StopRequest | None:
        """Whether the job asks its trainer to stop, and why (`cancel` or `pause`); the job document is
        read at most every `cancel_every_s` unless forced. A cancel, once seen, stays seen."""
        now = time.monotonic()
        if self._stop != "cancel" and (force or now - self._last_cancel_check >= self._cancel_every_s):
            self._last_cancel_check = now
            document = self._store.get(job_path(self._job_id))
            self._stop = Job.model_validate(document).stop_requested if document else None
        return self._stop

    def cancel_requested(self, *, force: bool = False) -> bool:
        return self.stop_requested(force=force) == "cancel"


class SilentReporter(JobReporter):
    """The reporter of a data-parallel rank other than 0: it writes nothing (rank 0 is the job's one
    writer of events, metrics, progress, heartbeat and status) and reads nothing (what rank 0 reads,
    the stop flags, it decides for every rank: runtune/training/distributed.py)."""

    def update(self, **fields: Any) -> None:
        return None

    def start_heartbeat(self) -> None:
        return None

    def running(self, execution: str | None, attempt: int, processes: int = 1) -> bool:
        return True  # rank 0's answer is the one the recipe goes by

    def paused(self, text: str) -> bool:
        return False  # likewise

    def progress(self, step: int, total: int, seconds_remaining: int | None, *, force: bool = False) -> None:
        return None

    def finish(self, status: JobStatus, text: str, *, error: ApiError | None = None, **fields: Any) -> bool:
        return False

    def message(self, text: str, *, level: Level = "info") -> None:
        return None

    def metrics(self, step: int, data: dict[str, Any]) -> None:
        return None

    def flush(self) -> None:
        return None

    def resume_reporting(self) -> int:
        return 0

    def stop_requested(self, *, force: bool = False) -> StopRequest | None:
        return None


def _may_run(status: JobStatus) -> bool:
    """A job its trainer may still write: not ended, and not paused (a paused job is left only by
    the jobs API's resume or cancel)."""
    return not status.is_terminal and status is not JobStatus.paused
