"""A stand-in private service for gateway tests that need endpoints the real services do not have
(yet): it counts a streamed upload without keeping it, emits Server-Sent Events slowly, and echoes
the headers it received. It checks the internal credential exactly as the real services do."""

from __future__ import annotations

import asyncio
import os
import time

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from runtune.api.deps import CurrentUser
from runtune.api.service_app import create_service_app
from runtune.settings import ServiceSettings

router = APIRouter()


@router.post("/v1/datasets/upload-sink")
async def upload_sink(request: Request, user: CurrentUser) -> dict[str, object]:
    total = 0
    chunks = 0
    async for chunk in request.stream():
        total += len(chunk)
        chunks += 1
    return {"bytes": total, "chunks": chunks, "uid": user.uid}


@router.get("/v1/datasets/echo-headers")
async def echo_headers(request: Request, user: CurrentUser) -> dict[str, object]:
    return {"uid": user.uid, "headers": dict(request.headers)}


@router.get("/v1/datasets/sse")
async def sse(user: CurrentUser, n: int = 5, gap: float = 0.3) -> StreamingResponse:
    async def events():
        for i in range(n):
            yield f'id: {i}\nevent: tick\ndata: {{"i": {i}, "t": {time.time()}}}\n\n'.encode()
            await asyncio.sleep(gap)

    return StreamingResponse(events(), media_type="text/event-stream")


def create_app() -> object:
    settings = ServiceSettings(port=int(os.environ.get("RUNTUNE_PORT", "0")))
    return create_service_app("test-upstream", settings, routers=[router])
