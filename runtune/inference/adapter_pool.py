"""Keeps fine-tuned adapters warm in the engine: loaded once, reused by every request, and the
least recently used one unloaded when the engine's `--max-loras` slots are full.

Peer platforms reload the adapter (or the whole engine) per request; here a request for a loaded
adapter costs nothing but a dictionary lookup.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict

from runtune.ports.engine import InferenceEngine

log = logging.getLogger("runtune.inference")


class AdapterPool:
    def __init__(self, engine: InferenceEngine, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._engine = engine
        self._capacity = capacity
        self._loaded: OrderedDict[str, str] = OrderedDict()
        self._lock = asyncio.Lock()

    @property
    def loaded(self) -> list[str]:
        """Adapter names, least recently used first."""
        return list(self._loaded)

    async def ensure(self, name: str, path: str) -> None:
        """Make `name` (the adapter in folder `path` on the engine's disk) servable."""
        if self._loaded.get(name) == path:
            self._loaded.move_to_end(name)
            return
        async with self._lock:
            if self._loaded.get(name) == path:
                self._loaded.move_to_end(name)
                return
            while len(self._loaded) >= self._capacity:
                evicted, _ = self._loaded.popitem(last=False)
                await self._engine.unload_adapter(evicted)
                log.info("adapter unloaded", extra={"adapter": evicted})
            await self._engine.load_adapter(name, path)
            self._loaded[name] = path
            log.info("adapter loaded", extra={"adapter": name})

    async def refresh(self, name: str, path: str) -> None:
        """The engine answered that it does not serve `name` (it restarted and lost its adapters):
        load it again, unless a concurrent refresh already did."""
        async with self._lock:
            if name in await self._engine.models():
                self._loaded[name] = path
                return
            self._loaded.pop(name, None)
            while len(self._loaded) >= self._capacity:
                evicted, _ = self._loaded.popitem(last=False)
                await self._engine.unload_adapter(evicted)
            await self._engine.load_adapter(name, path)
            self._loaded[name] = path
            log.warning("adapter reloaded after the engine lost it", extra={"adapter": name})

    async def forget(self, name: str) -> None:
        """Unload an adapter whose job was deleted."""
        async with self._lock:
            if self._loaded.pop(name, None) is not None:
                await self._engine.unload_adapter(name)
