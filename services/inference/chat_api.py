"""`POST /v1/chat/completions`: OpenAI's chat completions on a base model or the caller's own `ft:` model."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from runtune.api.deps import CurrentUser, Streams
from services.inference.deps import Inference

router = APIRouter(tags=["inference"])


class ChatRequest(BaseModel):
    """The fields Runtune checks; the other OpenAI fields are accepted and ignored."""

    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=300)
    messages: list[dict[str, Any]] = Field(min_length=1, max_length=256)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=8192)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=8192)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    seed: int | None = None
    stop: str | list[str] | None = None
    n: int = Field(default=1, ge=1, le=1)


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatRequest, user: CurrentUser, inference: Inference, streams: Streams) -> Any:
    request = body.model_dump(exclude_none=True)
    if body.stream:
        streams.check(user.uid)  # before the engine is asked for anything
        events = streams.hold(user.uid, await inference.chat_stream(user.uid, request))
        return StreamingResponse(events, media_type="text/event-stream", headers={"cache-control": "no-cache"})
    return await inference.chat(user.uid, request)
