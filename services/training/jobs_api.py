"""`/v1/fine_tuning/jobs`: the OpenAI fine-tuning API shapes, with Runtune's extra fields."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from runtune.api.deps import CurrentUser, Pagination, Streams
from runtune.errors import InvalidRequest
from runtune.owned import JobCheckpoints
from runtune.schemas import Checkpoint, Job, JobEvent, ListPage
from runtune.schemas.jobs import CreateJobRequest, JobDeleted, MetricsPage, seq_of_event_id
from services.training.job_deletion import JobDeletion
from services.training.jobs_service import JobService

router = APIRouter(prefix="/v1/fine_tuning/jobs", tags=["fine-tuning"])

SSE_POLL_S = 1.0
SSE_KEEPALIVE_S = 15.0


def job_service(request: Request) -> JobService:
    return request.app.state.jobs


Jobs = Annotated[JobService, Depends(job_service)]


@router.post("", response_model=Job)
def create_job(
    body: CreateJobRequest,
    user: CurrentUser,
    jobs: Jobs,
    idempotency_key: Annotated[str | None, Header(max_length=255)] = None,
) -> Job:
    return jobs.create(user.uid, body, idempotency_key)


@router.get("", response_model=ListPage[Job])
def list_jobs(request: Request, user: CurrentUser, jobs: Jobs, page: Pagination) -> ListPage[Job]:
    # OpenAI's filter syntax: ?metadata[key]=value
    metadata = {
        key[len("metadata[") : -1]: value
        for key, value in request.query_params.items()
        if key.startswith("metadata[") and key.endswith("]")
    }

    # Filtered here, not in the query: the keys are the user's own (an index per key otherwise).
    def matches(job: Job) -> bool:
        return all((job.metadata or {}).get(key) == value for key, value in metadata.items())

    found = jobs.jobs.list_owned(user.uid, limit=page.limit + 1, after=page.after, keep=matches if metadata else None)
    return ListPage[Job].from_overfetch(found, page.limit)


@router.get("/{job_id}", response_model=Job)
def get_job(job_id: str, user: CurrentUser, jobs: Jobs) -> Job:
    return jobs.get(user.uid, job_id)


@router.delete("/{job_id}", response_model=JobDeleted)
def delete_job(job_id: str, request: Request, user: CurrentUser) -> JobDeleted:
    """Runtune's own: an ended job and everything it produced (services/training/job_deletion.py)."""
    deletion: JobDeletion = request.app.state.job_deletion
    return deletion.delete(user.uid, job_id)


@router.post("/{job_id}/cancel", response_model=Job)
def cancel_job(job_id: str, user: CurrentUser, jobs: Jobs) -> Job:
    return jobs.cancel(user.uid, job_id)


@router.post("/{job_id}/pause", response_model=Job)
def pause_job(job_id: str, user: CurrentUser, jobs: Jobs) -> Job:
    return jobs.pause(user.uid, job_id)


@router.post("/{job_id}/resume", response_model=Job)
def resume_job(job_id: str, user: CurrentUser, jobs: Jobs) -> Job:
    return jobs.resume(user.uid, job_id)


@router.get("/{job_id}/checkpoints", response_model=ListPage[Checkpoint])
def list_checkpoints(job_id: str, user: CurrentUser, jobs: Jobs, page: Pagination) -> ListPage[Checkpoint]:
    job = jobs.jobs.get_owned(user.uid, job_id)
    # Newest first, as OpenAI lists them; the best one (lowest validation loss) marked.
    found = [
        checkpoint.model_copy(update={"best": checkpoint.fine_tuned_model_checkpoint == job.best_checkpoint})
        for checkpoint in reversed([stored.checkpoint for stored in JobCheckpoints(jobs.jobs.store).list(job.id)])
    ]
    if page.after is not None:
        ids = [checkpoint.id for checkpoint in found]
        if page.after not in ids:
            raise InvalidRequest(f"Unknown checkpoint id '{page.after}'", param="after")
        found = found[ids.index(page.after) + 1 :]
    return ListPage[Checkpoint].from_overfetch(found[: page.limit + 1], page.limit)


METRICS_PAGE = 1000
METRICS_PAGE_MAX = 10_000


@router.get("/{job_id}/metrics", response_model=MetricsPage)
def job_metrics(
    job_id: str,
    user: CurrentUser,
    jobs: Jobs,
    from_step: Annotated[int, Query(ge=0, description="First step (inclusive)")] = 0,
    to_step: Annotated[int | None, Query(ge=0, description="Last step (inclusive)")] = None,
    after_step: Annotated[int | None, Query(ge=0, description="Steps after this one (the next page)")] = None,
    limit: Annotated[int, Query(ge=1, le=METRICS_PAGE_MAX, description="Points per page")] = METRICS_PAGE,
) -> MetricsPage:
    """The training curve, one point per step in step order, a page at a time: `has_more` says a
    later page exists, read it with `after_step` = the last point's step. Each call reads at most
    `limit` + 1 events, however long the job ran."""
    jobs.jobs.get_owned(user.uid, job_id)
    after = max(from_step - 1, after_step if after_step is not None else -1)
    found = jobs.events.metrics(job_id, after_step=after if after >= 0 else None, to_step=to_step, limit=limit + 1)
    points = [event.data for event in found if event.data is not None]
    return MetricsPage(data=points[:limit], has_more=len(points) > limit)


# A page of events as JSON; the Server-Sent Events stream (`?stream=true`) sends the same objects one by one.
@router.get("/{job_id}/events", response_model=ListPage[JobEvent])
async def list_events(
    job_id: str,
    request: Request,
    user: CurrentUser,
    jobs: Jobs,
    page: Pagination,
    streams: Streams,
    stream: bool = False,
    last_event_id: Annotated[str | None, Header()] = None,
) -> Any:
    await run_in_threadpool(jobs.jobs.get_owned, user.uid, job_id)
    wants_stream = stream or "text/event-stream" in request.headers.get("accept", "")
    if wants_stream:
        cursor, param = (last_event_id, "Last-Event-ID") if last_event_id else (page.after, "after")
        start = seq_of_event_id(cursor) if cursor else None
        if cursor and start is None:
            raise InvalidRequest(f"Unknown event id '{cursor[:200]}'", param=param)
        return StreamingResponse(
            streams.hold(user.uid, _event_stream(jobs, job_id, start, request)),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )
    after = seq_of_event_id(page.after) if page.after else None
    if page.after and after is None:
        raise InvalidRequest(f"Unknown event id '{page.after}'", param="after")
    found = await run_in_threadpool(jobs.events.read, job_id, after_seq=after, limit=page.limit + 1, newest_first=True)
    return ListPage[JobEvent].from_overfetch(found, page.limit)


def _sse(event: JobEvent) -> bytes:
    payload = json.dumps(event.model_dump(mode="json"), separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.type}\ndata: {payload}\n\n".encode()


async def _event_stream(jobs: JobService, job_id: str, after: int | None, request: Request) -> AsyncIterator[bytes]:
    """Events as they are written, resuming after `after`; ends once the job has finished and
    every event up to its end has been sent."""
    quiet = 0.0
    while not await request.is_disconnected():
        events = await run_in_threadpool(jobs.events.read, job_id, after_seq=after, limit=500)
        for event in events:
            yield _sse(event)
            after = event.seq
        if events:
            quiet = 0.0
            continue
        job = await run_in_threadpool(jobs.jobs.get, job_id)
        if job is None or job.status.is_terminal:
            # One more read: the trainer may have written its last events just before finishing.
            for event in await run_in_threadpool(jobs.events.read, job_id, after_seq=after, limit=500):
                yield _sse(event)
            status = job.status.value if job else "deleted"
            yield f"event: done\ndata: {json.dumps({'status': status})}\n\n".encode()
            return
        await asyncio.sleep(SSE_POLL_S)
        quiet += SSE_POLL_S
        if quiet >= SSE_KEEPALIVE_S:
            quiet = 0.0
            yield b": keep-alive\n\n"
