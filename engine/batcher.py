"""Batches concurrent requests: one worker thread runs the model; requests that arrive while it is
busy (or within a short window) and can share a forward pass (same base model, same kind, same
sampling settings) run together as one batch."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("runtune.engine")
# The longest a batch waits for requests still being parsed, in batch windows.
MAX_WAIT_WINDOWS = 10


class Sink:
    """Carries a work item's results from the worker thread to the request's event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

    def put(self, kind: str, value: Any = None) -> None:
        self._loop.call_soon_threadsafe(self.queue.put_nowait, (kind, value))


@dataclass
class Work:
    key: Hashable  # items with equal keys may share a batch
    payload: Any
    sink: Sink


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    largest: int = 0
    busy_s: float = 0.0  # time spent running batches
    sizes: list[int] = field(default_factory=list)

    def record(self, size: int, seconds: float) -> None:
        self.busy_s += seconds
        self.batches += 1
        self.items += size
        self.largest = max(self.largest, size)
        self.sizes = [*self.sizes[-99:], size]


class Batcher:
    def __init__(
        self,
        run: Callable[[Sequence[Work]], None],
        *,
        max_batch: int = 16,
        window_s: float = 0.005,
        limit: Callable[[Hashable], int] | None = None,
    ) -> None:
        self._run = run
        # The largest batch for a key (scoring rows are cheaper than generation rows: no decode loop).
        self._limit = limit or (lambda key: max_batch)
        self._window_s = window_s
        self._pending: deque[Work] = deque()
        self._arriving = 0  # requests being parsed that will submit work soon
        self._last_run_s = 0.0
        self._ready = threading.Condition()
        self._closed = False
        self.stats = BatchStats()
        self._thread = threading.Thread(target=self._loop, name="engine-batcher", daemon=True)
        self._thread.start()

    def submit(self, work: Work) -> None:
        with self._ready:
            self._pending.append(work)
            self._ready.notify()

    @contextmanager
    def arriving(self) -> Iterator[None]:
        """Around a request's parsing and submission: a batch about to start waits for it (briefly)."""
        with self._ready:
            self._arriving += 1
        try:
            yield
        finally:
            with self._ready:
                self._arriving -= 1
                self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(timeout=10)

    def _take(self) -> list[Work] | None:
        with self._ready:
            loaded = bool(self._pending)  # work was waiting when the last batch ended
            while not self._pending and not self._closed:
                self._ready.wait()
            if self._closed:
                return None
            key = self._pending[0].key
            largest = self._limit(key)
            # A forward pass costs nearly as much for one row as for dozens, and an evaluation sample's
            # labels arrive as separate HTTP requests, so a batch waits for companions: one window when
            # idle; under load up to as long as the last pass ran (the server parses new requests
            # between passes); up to MAX_WAIT_WINDOWS while requests are being parsed (`arriving`).
            start = time.monotonic()
            longest = MAX_WAIT_WINDOWS * self._window_s
            patience = min(max(self._window_s, self._last_run_s if loaded else 0.0), longest)
            while len(self._pending) < largest:
                waited = longest if self._arriving else patience
                if (left := start + waited - time.monotonic()) <= 0:
                    break
                self._ready.wait(left)
            batch = [work for work in self._pending if work.key == key][:largest]
            for work in batch:
                self._pending.remove(work)
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            started = time.perf_counter()
            try:
                self._run(batch)
            except Exception as exc:  # one failed batch fails its requests, never the worker
                log.exception("batch failed")
                for work in batch:
                    work.sink.put("error", exc)
            self._last_run_s = time.perf_counter() - started
            self.stats.record(len(batch), self._last_run_s)
