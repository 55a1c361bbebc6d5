"""The inference service's decisions: resolve the caller's model, make it servable, talk to the engine."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.concurrency import run_in_threadpool

from runtune.errors import PermissionDenied
from runtune.inference.resolver import checkpoint_adapter_name, model_not_found
from runtune.inference.serving import Serving
from runtune.jobs import removal
from runtune.models import registry
from runtune.schemas.chat import check_messages
from runtune.schemas.common import Deleted
from runtune.schemas.jobs import parse_tuned_model_id, tuned_model_id

# What is passed on to the engine; anything else in a request is dropped, so a caller cannot reach
# engine-only options (adapter paths, prompt scoring) through the public API.
FORWARDED = ("messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed", "stop", "n")


class InferenceService(Serving):
    """Chat for the API's callers, on top of what evaluations share (`Serving`: resolve, stage, ask)."""

    def engine_body(self, body: dict[str, Any], engine_name: str) -> dict[str, Any]:
        return {"model": engine_name, **{key: body[key] for key in FORWARDED if body.get(key) is not None}}

    async def chat(self, uid: str, body: dict[str, Any]) -> dict[str, Any]:
        check_messages(body["messages"])  # before anything is resolved or loaded
        target = self.resolver.resolve(uid, body["model"])
        answer = await self._stager.run(target, lambda name: self.engine.chat(self.engine_body(body, name)))
        return {**answer, "model": body["model"]}

    async def chat_stream(self, uid: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        """Resolves and validates before the first byte (errors are still proper 4xx answers), then relays."""
        check_messages(body["messages"])
        target = self.resolver.resolve(uid, body["model"])

        async def opened(name: str) -> tuple[bytes, AsyncIterator[bytes]]:
            request = {**self.engine_body(body, name), "stream_options": body.get("stream_options")}
            upstream = self.engine.chat_stream({k: v for k, v in request.items() if v is not None})
            return await anext(upstream, b""), upstream

        first, upstream = await self._stager.run(target, opened)
        return _renamed(first, upstream, body["model"])

    async def delete_model(self, uid: str, model: str) -> Deleted:
        """`DELETE /v1/models/{id}`: a tuned model out of the platform, its model checkpoints with it.
        In this order, so that nothing picks the model up while its files go: the job is marked
        (`model_deleted_at`: every resolver, in every instance and evaluation execution, answers 404
        for the model and its checkpoints from then on), the engine unloads them (its slots are shared
        by all instances), then their blobs go: the job's `export/` folder (adapter, merged model,
        checkpoints' adapters) and the caller's exports made from it (documents and archives), then the
        checkpoints' documents. The job stays in the history. A delete interrupted after the mark is
        finished by deleting again (404). A checkpoint alone cannot be deleted (403)."""
        if registry.lookup(model) is not None:
            # The model exists and the caller may see it (GET answers it), so 404 would be untrue, and
            # the request is well formed: it is just not the caller's to delete (OpenAI's 403 likewise).
            raise PermissionDenied(
                f"'{model}' is a base model; only your fine-tuned (`ft:`) models can be deleted",
                param="model",
                code="model_not_deletable",
            )
        parsed = parse_tuned_model_id(model)
        if parsed is not None and parsed[2] is not None:
            await run_in_threadpool(self.resolver.checkpoint, uid, model)  # the caller's own (else 404)...
            raise PermissionDenied(
                # ... but not deletable alone.
                f"'{model}' is a checkpoint of the model '{tuned_model_id(parsed[0], parsed[1])}'; delete that "
                "model and its checkpoints go with it",
                param="model",
                code="model_not_deletable",
            )
        job = await run_in_threadpool(self.resolver.tuned_job, uid, model, "model", deleted_too=True)
        first = await run_in_threadpool(removal.mark_model_deleted, self.store, job)
        checkpoints = await run_in_threadpool(removal.model_checkpoint_steps, self.store, job.id)
        for name in [job.id] + [checkpoint_adapter_name(job.id, step) for step in checkpoints]:
            await self._stager.discard(name)
        await run_in_threadpool(removal.remove_model_files, self.store, self.blobs, job)
        await run_in_threadpool(removal.remove_model_checkpoints, self.store, job.id, checkpoints)
        if not first:
            raise model_not_found(model)
        return Deleted(id=model, object="model")


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
