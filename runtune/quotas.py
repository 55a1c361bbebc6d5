"""Per-user quotas: what one user may hold or run at once, checked where the work starts.

The limits are settings (`ServiceSettings.quota_*`, env `RUNTUNE_QUOTA_*`); running jobs are bounded by
the training scheduler's slots instead (`RUNTUNE_MAX_RUNNING_JOBS_PER_USER`: a job over it waits
`queued`, it is not refused). Every refusal is the error envelope with `param` naming the limit (its
settings name) and the limit in the message: a 429 (`quota_exceeded`, `budget_exceeded`) when waiting
or cleaning up would let the request through, a 400 when the request alone is over the limit.

Counts are read from the stored documents, never kept in counters that could drift: each check is one
equality query on the user's own documents (served by Firestore's single-field indexes), bounded by
the limit it checks. Open SSE streams are counted per service instance (`StreamSlots`): a stream is a
connection to one instance, and Cloud Run runs several, so the bound per user is the limit times the
instances.
"""

from __future__ import annotations

import threading
import weakref
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from runtune.errors import InvalidRequest, RateLimited, RuntuneError
from runtune.ports.metadata import MetadataStore, OrderBy, Where
from runtune.schemas.common import OwnedResource

GIB = 1024**3
R = TypeVar("R", bound=OwnedResource)


@dataclass(frozen=True)
class Quotas:
    """The per-user limits; the field names are the settings' without their `quota_` prefix."""

    processing_datasets: int = 4
    stored_datasets: int = 500
    stored_bytes: int = 50 * GIB
    open_streams: int = 8
    running_evaluations: int = 2
    monthly_gpu_hours: float = 100.0


def setting(limit: str) -> str:
    """The settings name of a limit: what a refusal's `param` says."""
    return f"quota_{limit}"


def exceeded(limit: str, message: str, *, code: str = "quota_exceeded", alone: bool = False) -> RuntuneError:
    """The refusal for `limit`: 400 when the request alone is over it, else 429."""
    error = InvalidRequest if alone else RateLimited
    return error(message, param=setting(limit), code=code)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _owned(store: MetadataStore, collection: str, uid: str, *where: Where, limit: int) -> list[dict]:
    rows = store.query(collection, where=[Where("owner", "==", uid), *where], limit=limit)
    return [document for _, document in rows]


# -- datasets ------------------------------------------------------------------------------------------


def check_processing_datasets(store: MetadataStore, uid: str, quotas: Quotas) -> None:
    """Before a new dataset is stored: the user's datasets still processing (queued or running)."""
    limit = quotas.processing_datasets
    busy = _owned(store, "datasets", uid, Where("status", "==", "processing"), limit=limit)
    if len(busy) >= limit:
        raise exceeded(
            "processing_datasets",
            f"You have {_count(len(busy), 'dataset')} processing, the most one user may have at once "
            f"(quota_processing_datasets = {limit}); wait for one to finish or delete one",
        )


def check_storage(store: MetadataStore, uid: str, quotas: Quotas, adding: int, *, new_dataset: bool) -> None:
    """Before `adding` bytes are stored for the user (an upload, a file, a dataset): their datasets
    (what each keeps: source copy, shards, previews; the source size until it is ready) and their
    unexpired uploads no dataset was made from (a dataset keeps its own copy; the upload object is
    temporary). Reads at most `stored_datasets + 1` documents of each kind."""
    if adding > quotas.stored_bytes:
        raise exceeded(
            "stored_bytes",
            f"{adding:,} bytes is more than a user may store in all (quota_stored_bytes = {quotas.stored_bytes:,})",
            alone=True,
        )
    datasets = _owned(store, "datasets", uid, limit=quotas.stored_datasets + 1)
    if new_dataset and len(datasets) >= quotas.stored_datasets:
        raise exceeded(
            "stored_datasets",
            f"You have {_count(len(datasets), 'dataset')}, the most one user may keep "
            f"(quota_stored_datasets = {quotas.stored_datasets}); delete some first",
        )
    now = datetime.now(UTC).timestamp()
    uploads = _owned(store, "uploads", uid, limit=quotas.stored_datasets + 1)
    consumed = {(document.get("source") or {}).get("upload_id") for document in datasets}
    used = sum(_stored(document) for document in datasets) + sum(
        int(document.get("bytes") or 0)
        for document in uploads
        if document.get("expires_at", 0) > now and document.get("id") not in consumed
    )
    if used + adding > quotas.stored_bytes:
        raise exceeded(
            "stored_bytes",
            f"You store {used:,} bytes; {adding:,} more would pass the limit of {quotas.stored_bytes:,} per user "
            "(quota_stored_bytes); delete datasets or uploads first",
        )


def _stored(dataset: dict) -> int:
    return int(dataset.get("stored_bytes") or dataset.get("bytes") or 0)


# -- evaluations -----------------------------------------------------------------------------------


def check_running_evaluations(store: MetadataStore, uid: str, quotas: Quotas) -> None:
    limit = quotas.running_evaluations
    busy = _owned(store, "evaluations", uid, Where("status", "in", ["queued", "running"]), limit=limit)
    if len(busy) >= limit:
        raise exceeded(
            "running_evaluations",
            f"You have {_count(len(busy), 'unfinished evaluation')}, the most one user may run at once "
            f"(quota_running_evaluations = {limit}); wait for one to finish",
        )


# -- GPU budget ----------------------------------------------------------------------------------------


def month_start(now: datetime | None = None) -> int:
    """Unix seconds of the current calendar month's start (UTC): when the budget renews."""
    now = now or datetime.now(UTC)
    return int(now.replace(day=1, hour=0, minute=0, second=0, microsecond=0).timestamp())


def gpu_hours_this_month(jobs: Iterable[dict]) -> float:
    """What the user's jobs created this month cost or will cost, in GPU hours: each job's estimate
    (recorded when its GPU was chosen). Jobs that ended without launching cost nothing."""
    seconds = 0
    for job in jobs:
        never_ran = job.get("status") in ("failed", "cancelled") and not job.get("execution_name")
        if not never_ran:
            seconds += int(job.get("estimated_gpu_seconds") or 0)
    return seconds / 3600


def check_gpu_budget(store: MetadataStore, uid: str, quotas: Quotas, estimate_s: int, *, job_id: str) -> None:
    """Before a job is queued with its estimate: this month's estimates plus this one within the budget."""
    budget = quotas.monthly_gpu_hours
    asked = estimate_s / 3600
    if asked > budget:
        raise exceeded(
            "monthly_gpu_hours",
            f"This job's estimate, {asked:.2f} GPU hours, is over the monthly budget of {budget:g} GPU hours "
            "(quota_monthly_gpu_hours); train on fewer examples or epochs",
            code="budget_exceeded",
            alone=True,
        )
    # Newest first: the order the per-owner list index (owner, created_at DESC) serves.
    rows = store.query(
        "jobs",
        where=[Where("owner", "==", uid), Where("created_at", ">=", month_start())],
        order_by=[OrderBy("created_at", descending=True)],
    )
    used = gpu_hours_this_month(document for job, document in rows if job != job_id)
    if used + asked > budget:
        raise exceeded(
            "monthly_gpu_hours",
            f"This job's estimate, {asked:.2f} GPU hours, with the {used:.2f} your jobs this month are estimated "
            f"at, is over the monthly budget of {budget:g} GPU hours (quota_monthly_gpu_hours); it renews on the "
            "1st (UTC)",
            code="budget_exceeded",
        )


# -- open streams ------------------------------------------------------------------------------------


class StreamSlots:
    """Open SSE streams per user in this instance. `hold` refuses a stream over the limit before its
    response starts; the slot is freed when the stream ends, however it ends (done, client gone)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._open: dict[str, int] = {}
        self._lock = threading.Lock()

    def open_count(self, uid: str) -> int:
        with self._lock:
            return self._open.get(uid, 0)

    def check(self, uid: str) -> None:
        """Refuse now if the user has no stream left (before opening anything the stream would read)."""
        count = self.open_count(uid)
        if count >= self._limit:
            raise self._refusal(count)

    def _refusal(self, count: int) -> RuntuneError:
        return exceeded(
            "open_streams",
            f"You have {_count(count, 'stream')} open, the most one user may have at once "
            f"(quota_open_streams = {self._limit}); close one first",
        )

    def hold(self, uid: str, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """`stream`, holding one of the user's slots until it ends (refused when none is free)."""
        with self._lock:
            count = self._open.get(uid, 0)
            if count >= self._limit:
                raise self._refusal(count)
            self._open[uid] = count + 1
        released = threading.Event()

        def release() -> None:
            with self._lock:
                if released.is_set():
                    return
                released.set()
                left = self._open.get(uid, 1) - 1
                if left > 0:
                    self._open[uid] = left
                else:
                    self._open.pop(uid, None)

        held = _released(stream, release)
        # A response dropped before its body was first read (the client left at once) never runs the
        # generator's `finally`: the slot is freed when the generator object goes.
        weakref.finalize(held, release)
        return held


async def _released(stream: AsyncIterator[bytes], release: Callable[[], None]) -> AsyncIterator[bytes]:
    try:
        async for chunk in stream:
            yield chunk
    finally:
        release()


# -- fair turns ------------------------------------------------------------------------------------------


def fair_turns(waiting: Sequence[R], launched: Iterable[R], free: int, since: Callable[[R], float]) -> list[R]:
    """Which waiting items start in the `free` slots: each turn goes to the owner with the fewest
    items launched (ties: the one waiting longest, by `since`), that owner's oldest first. So one
    user's long queue never holds another user's item back for more than the runs under way."""
    running = Counter(item.owner for item in launched)
    queues: dict[str, deque[R]] = {}
    for item in sorted(waiting, key=since):
        queues.setdefault(item.owner, deque()).append(item)
    turns: list[R] = []
    while len(turns) < free and queues:
        owner = min(queues, key=lambda name: (running[name], since(queues[name][0])))
        turns.append(queues[owner].popleft())
        running[owner] += 1
        if not queues[owner]:
            del queues[owner]
    return turns
