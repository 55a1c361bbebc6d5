"""Keeps fine-tuned adapters warm in the engine: loaded once, reused by every request, and the
least recently used one unloaded when the engine's `--max-loras` slots are full.

Peer platforms reload the adapter (or the whole engine) per request; here a request for a loaded
adapter costs nothing but a dictionary lookup.

One engine has several users, each with its own pool: every inference service instance, and every
evaluation execution (`jobs/evaluate`). A pool sees only its own bookkeeping, so it is written for
company: loading is idempotent (an adapter another user loaded is adopted, not an error), unloading
what another user already unloaded is not an error, and a pool never evicts an adapter one of its
own calls is using. An adapter another pool evicted under a call is loaded again on the engine's
"model not found" (`AdapterStager.run`), the path that also covers an engine restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from runtune.errors import InvalidRequest
from runtune.ports.engine import InferenceEngine

log = logging.getLogger("runtune.inference")


class AdapterPool:
    def __init__(self, engine: InferenceEngine, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._engine = engine
        self._capacity = capacity
        self._loaded: OrderedDict[str, str] = OrderedDict()
        # Adapters this pool loaded itself (not adopted from another user): what `release` unloads.
        self._own: set[str] = set()
        self._in_use: Counter[str] = Counter()
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> list[str]:
        """Adapter names, least recently used first."""
        return list(self._loaded)

    @asynccontextmanager
    async def using(self, name: str) -> AsyncIterator[None]:
        """Marks `name` in use for the block: this pool does not evict it meanwhile."""
        self._in_use[name] += 1
        try:
            yield
        finally:
            self._in_use[name] -= 1
            if self._in_use[name] <= 0:
                del self._in_use[name]

    async def ensure(self, name: str, path: str) -> None:
        """Make `name` (the adapter in folder `path` on the engine's disk) servable."""
        if self._loaded.get(name) == path:
            self._loaded.move_to_end(name)
            return
        async with self._lock:
            if self._loaded.get(name) == path:
                self._loaded.move_to_end(name)
                return
            await self._make_room()
            await self._load(name, path)
            log.info("adapter loaded", extra={"adapter": name})

    async def refresh(self, name: str, path: str) -> None:
        """The engine answered that it does not serve `name` (it restarted and lost its adapters, or
        another pool evicted it): load it again, unless a concurrent refresh already did."""
        async with self._lock:
            if name in await self._engine.models():
                self._loaded[name] = path
                return
            self._loaded.pop(name, None)
            await self._make_room()
            await self._load(name, path)
            log.warning("adapter reloaded after the engine lost it", extra={"adapter": name})

    async def forget(self, name: str) -> None:
        """Unload an adapter whose model was deleted, whoever loaded it: the engine is shared, so its
        slot is freed for every pool; the others' stale bookkeeping is harmless (their eviction of an
        adapter already gone is not an error, and the resolver no longer sends requests for it)."""
        async with self._lock:
            self._loaded.pop(name, None)
            self._own.discard(name)
            if name in await self._engine.models():
                await self._unload(name)
                log.info("adapter unloaded: its model was deleted", extra={"adapter": name})

    async def release(self) -> None:
        """Unload the adapters this pool loaded itself (an evaluation execution, at its end, leaves the
        engine as it found it); adopted ones stay, their loader still counts on them."""
        async with self._lock:
            for name in [name for name in self._loaded if name in self._own]:
                del self._loaded[name]
                self._own.discard(name)
                await self._unload(name)

    # -- under self._lock --------------------------------------------------------------------------

    async def _make_room(self) -> None:
        """Evict least recently used adapters down to capacity, never one a call of this pool is
        using: when all are busy the engine holds one more for a while (vLLM's LoRA cache and the
        local engine accept more registrations than `--max-loras`; the slots only bound a batch)."""
        while len(self._loaded) >= self._capacity:
            idle = next((name for name in self._loaded if name not in self._in_use), None)
            if idle is None:
                return
            del self._loaded[idle]
            self._own.discard(idle)
            await self._unload(idle)
            log.info("adapter unloaded", extra={"adapter": idle})

    async def _load(self, name: str, path: str) -> None:
        try:
            await self._engine.load_adapter(name, path)
        except InvalidRequest:
            # Another user of the engine (another service instance, an evaluation execution) loaded
            # it first: the engine refuses a second load of the same name. Adopt it; anything else
            # (a missing folder, a base the engine does not serve) is the caller's error.
            if name not in await self._engine.models():
                raise
            self._loaded[name] = path
            return
        self._loaded[name] = path
        self._own.add(name)

    async def _unload(self, name: str) -> None:
        try:
            await self._engine.unload_adapter(name)
        except InvalidRequest:
            # Already gone: another user unloaded it, or the engine restarted. The outcome we wanted.
            log.info("adapter was already unloaded", extra={"adapter": name})
