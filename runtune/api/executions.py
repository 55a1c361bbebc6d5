"""What a private service does around the executions it launches (trainers, ingestions, evaluations):
a reconcile pass every few seconds while it runs, and, on the local platform, its launcher's child
processes stopped with it.

Reads reconcile the items they show; the periodic pass covers the ones nobody reads (locally, and in
the cloud while the instance has CPU: Cloud Run throttles it between requests).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.concurrency import run_in_threadpool

from runtune.ports.launcher import JobLauncher

log = logging.getLogger("runtune.executions")


async def _every(what: str, reconcile: Callable[[], list[str]], every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            ended = await run_in_threadpool(reconcile)
        except Exception:  # one bad pass (a Firestore hiccup) must not stop the loop
            log.exception("reconcile pass failed", extra={"items": what})
            continue
        if ended:
            log.info("reconciled", extra={"items": what, "ended": ended})


@asynccontextmanager
async def reconciling(
    what: str,
    reconcile: Callable[[], list[str]],
    every_s: float,
    launcher: JobLauncher,
    *,
    after_shutdown: Callable[[], object] | None = None,
) -> AsyncIterator[None]:
    """Run `reconcile` (blocking; returns the ids of the items it ended) every `every_s` seconds in a worker
    thread while the block runs; then stop a local launcher's processes and call `after_shutdown`."""
    task = asyncio.create_task(_every(what, reconcile, every_s))
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        shutdown = getattr(launcher, "shutdown", None)
        if shutdown is not None:  # only the local launcher has child processes to stop
            await run_in_threadpool(shutdown)
            if after_shutdown is not None:
                await run_in_threadpool(after_shutdown)
