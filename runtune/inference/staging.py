"""Getting a tuned model's adapter into the engine: onto the engine's disk (locally a download from
the bucket; in the cloud the engine reads the bucket's read-only volume), then loaded once and
kept warm by the LRU pool. Used by the inference service and by evaluation executions alike: the
local download folder is shared, so staging is atomic across processes too."""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from starlette.concurrency import run_in_threadpool

from runtune.inference.adapter_pool import AdapterPool
from runtune.inference.resolver import Target, TunedAdapter
from runtune.ports.blobs import BlobStore
from runtune.ports.engine import EngineModelNotFound

log = logging.getLogger("runtune.inference")
T = TypeVar("T")


class AdapterStager:
    def __init__(self, pool: AdapterPool, blobs: BlobStore, *, root: str, download: bool) -> None:
        self._pool, self._blobs, self._root, self._download = pool, blobs, root, download
        self._locks: dict[str, asyncio.Lock] = {}

    async def ready(self, target: Target) -> str:
        """The engine's name for the target, its adapter loaded if it has one."""
        if target.adapter is not None:
            adapter = target.adapter
            async with self._locks.setdefault(adapter.name, asyncio.Lock()):
                await self._pool.ensure(adapter.name, await self._path(adapter))
        return target.engine_name

    async def run(self, target: Target, call: Callable[[str], Awaitable[T]]) -> T:
        """`call(engine name)` with the target servable. An engine that restarted has lost its adapters
        while the pool still counts them loaded: on its "model not found" the adapter is loaded again
        and the call retried, once."""
        if target.adapter is None:
            return await call(await self.ready(target))
        adapter = target.adapter
        async with self._pool.using(adapter.name):  # this pool evicts nothing a call is using
            name = await self.ready(target)
            try:
                return await call(name)
            except EngineModelNotFound:
                log.warning("the engine lost an adapter; reloading it", extra={"adapter": adapter.name})
                async with self._locks.setdefault(adapter.name, asyncio.Lock()):
                    await self._pool.refresh(adapter.name, await self._path(adapter))
                return await call(name)

    async def discard(self, name: str) -> None:
        """The model of adapter `name` (a job id, or a checkpoint's `<job>-step-N`) was deleted: out of
        the engine, and its local download gone."""
        async with self._locks.setdefault(name, asyncio.Lock()):
            await self._pool.forget(name)
            if self._download:
                await run_in_threadpool(shutil.rmtree, Path(self._root) / name, True)
        self._locks.pop(name, None)

    async def release(self) -> None:
        """Unload what this process loaded (see `AdapterPool.release`)."""
        await self._pool.release()

    async def _path(self, adapter: TunedAdapter) -> str:
        return await run_in_threadpool(self._stage, adapter) if self._download else self._mounted(adapter)

    def _mounted(self, adapter: TunedAdapter) -> str:
        return f"{self._root.rstrip('/')}/{adapter.prefix.rstrip('/')}"

    def _stage(self, adapter: TunedAdapter) -> str:
        """Download the adapter once (an exported adapter never changes); atomic by rename."""
        folder = Path(self._root) / adapter.name
        if (folder / "adapter_config.json").is_file():
            return str(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{adapter.name}-", dir=folder.parent))
        try:
            for blob in self._blobs.list(adapter.prefix):
                relative = blob.path[len(adapter.prefix) :]
                if relative and ".." not in relative.split("/"):
                    self._blobs.download_file(blob.path, staging / relative)
            try:
                staging.rename(folder)
            except OSError:
                # Another process (the service, an evaluation execution) staged it meanwhile.
                if not (folder / "adapter_config.json").is_file():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return str(folder)
