"""The inference service's decisions: resolve the caller's model, make it servable, talk to the engine."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from runtune.errors import InvalidRequest
from runtune.ports.blobs import BlobStore
from runtune.ports.engine import InferenceEngine
from runtune.ports.metadata import MetadataStore
from services.inference.adapters import AdapterStager
from services.inference.models import ModelResolver, Target

# What is passed on to the engine; anything else in a request is dropped, so a caller cannot reach
# engine-only options (adapter paths, prompt scoring) through the public API.
FORWARDED = ("messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "n")


def check_images(messages: list[dict[str, Any]]) -> None:
    """Images must be inline data URLs: the platform never fetches a URL on a caller's behalf."""
    for i, message in enumerate(messages):
        content = message.get("content")
        for j, part in enumerate(content if isinstance(content, list) else []):
            if isinstance(part, dict) and part.get("type") == "image_url":
                url = (part.get("image_url") or {}).get("url") if isinstance(part.get("image_url"), dict) else None
                if not isinstance(url, str) or not url.startswith("data:image/"):
                    raise InvalidRequest(
                        "Images must be base64 data URLs (data:image/...;base64,...)",
                        param=f"messages[{i}].content[{j}].image_url.url",
                    )


class InferenceService:
    def __init__(
        self,
        store: MetadataStore,
        blobs: BlobStore,
        engine: InferenceEngine,
        stager: AdapterStager,
    ) -> None:
        self.store, self.blobs, self.engine = store, blobs, engine
        self.models = ModelResolver(store)
        self._stager = stager

    async def target(self, uid: str, model: str, param: str = "model") -> tuple[Target, str]:
        target = self.models.resolve(uid, model, param)
        return target, await self._stager.ready(target)

    def engine_body(self, body: dict[str, Any], engine_name: str) -> dict[str, Any]:
        check_images(body["messages"])
        return {"model": engine_name, **{key: body[key] for key in FORWARDED if body.get(key) is not None}}

    async def chat(self, uid: str, body: dict[str, Any]) -> dict[str, Any]:
        target = self.models.resolve(uid, body["model"])
        answer = await self._stager.run(target, lambda name: self.engine.chat(self.engine_body(body, name)))
        return {**answer, "model": body["model"]}

    async def chat_stream(self, uid: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """Resolves and validates before the first byte (errors are still proper 4xx answers), then relays."""
        target = self.models.resolve(uid, body["model"])

        async def opened(name: str) -> tuple[bytes, AsyncIterator[bytes]]:
            request = {**self.engine_body(body, name), "stream_options": body.get("stream_options")}
            upstream = self.engine.chat_stream({k: v for k, v in request.items() if v is not None})
            return await anext(upstream, b""), upstream

        first, upstream = await self._stager.run(target, opened)
        return _renamed(first, upstream, body["model"])

    async def answer(self, target: Target, messages: list[dict[str, Any]], max_tokens: int, temperature: float) -> str:
        body = {"messages": messages, "max_tokens": max_tokens, "temperature": temperature}
        reply = await self._stager.run(target, lambda name: self.engine.chat({"model": name, **body}))
        return reply["choices"][0]["message"]["content"] or ""

    async def score(self, target: Target, messages: list[dict[str, Any]], continuations: list[str]) -> list[float]:
        return await self._stager.run(target, lambda name: self.engine.score(name, messages, continuations))


async def _renamed(first: bytes, rest: AsyncIterator[bytes], model: str) -> AsyncIterator[bytes]:
    """The engine's events with `model` set to the id the caller used (never the engine's adapter name)."""
    buffer = b""
    async for chunk in _chain(first, rest):
        buffer += chunk
        *events, buffer = buffer.split(b"\n\n")
        for event in events:
            yield _rename_event(event, model) + b"\n\n"
    if buffer.strip():
        yield _rename_event(buffer, model) + b"\n\n"


async def _chain(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk


def _rename_event(event: bytes, model: str) -> bytes:
    lines = []
    for line in event.split(b"\n"):
        if line.startswith(b"data: {"):
            data = json.loads(line[6:])
            if "model" in data:
                data["model"] = model
            line = b"data: " + json.dumps(data).encode()
        lines.append(line)
    return b"\n".join(lines)
