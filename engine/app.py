"""The local engine's HTTP surface: the subset of vLLM's OpenAI-compatible server Runtune uses."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from engine.batcher import Sink
from engine.execute import GenerateRequest, Prompt, Sampling, ScoreRequest, ScoreSetRequest
from engine.local_engine import LocalEngine
from engine.messages import parse_messages
from runtune.adapters.openai_engine import SCORE_PATH
from runtune.api.errors import install_error_handlers
from runtune.errors import InvalidRequest, RuntuneError
from runtune.internal_auth import LocalTokenVerifier
from runtune.logging import configure_logging
from runtune.settings import EngineServerSettings

OPEN_PATHS = frozenset({"/health", "/healthz"})
# Labels of one classification set scored together (a request per sample, one batch per request).
MAX_CONTINUATIONS = 256
# vLLM's default `--max-logprobs`: the most alternatives a request may ask for.
MAX_TOP_LOGPROBS = 20


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, int | float) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequest(f"{name} must be a number in [{low}, {high}]", param=name)
    return float(value)


def _max_tokens(body: dict[str, Any], ceiling: int) -> int:
    value = body.get("max_completion_tokens", body.get("max_tokens"))
    if value is None:
        return min(256, ceiling)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= ceiling:
        raise InvalidRequest(f"max_tokens must be an integer in [1, {ceiling}]", param="max_tokens")
    return value


class _Completion:
    """Tokens arriving from the worker, decoded incrementally (a partial UTF-8 character waits)."""

    def __init__(self, tokenizer: Any, stops: list[str]) -> None:
        self._tokenizer, self._stops = tokenizer, stops
        self.ids: list[int] = []
        self.text = ""
        self.finish_reason: str | None = None
        self.prompt_tokens = 0

    def add(self, token: int) -> str:
        self.ids.append(token)
        text = self._tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):
            return ""
        for stop in self._stops:
            if stop in text:
                text, self.finish_reason = text[: text.index(stop)], "stop"
        delta, self.text = text[len(self.text) :], text
        return delta

    async def events(self, sink: Sink) -> AsyncIterator[tuple[str, Any]]:
        while True:
            kind, value = await sink.queue.get()
            if kind == "error":
                raise value
            if kind == "prompt_tokens":
                self.prompt_tokens = value
                continue
            yield kind, value
            if kind in ("finish", "prompt_logprobs"):
                return


class _Bearer:
    """Refuses requests without the engine's key. Plain ASGI rather than `BaseHTTPMiddleware`, whose
    per-request tasks and streams cost more than a scoring request's own work."""

    def __init__(self, app: ASGIApp, verifier: LocalTokenVerifier) -> None:
        self._app, self._verifier = app, verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            try:
                self._verifier.verify(Headers(scope=scope).get("authorization"))
            except RuntuneError as exc:
                await JSONResponse(exc.envelope(), status_code=exc.status_code)(scope, receive, send)
                return
        await self._app(scope, receive, send)


def create_app(settings: EngineServerSettings | None = None) -> FastAPI:
    settings = settings or EngineServerSettings()
    configure_logging("engine", "INFO")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.engine = LocalEngine(settings)
        try:
            yield
        finally:
            app.state.engine.close()

    app = FastAPI(title="runtune-local-engine", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_error_handlers(app)
    if settings.api_key_sha256:
        app.add_middleware(_Bearer, verifier=LocalTokenVerifier(settings.api_key_sha256))

    def engine(request: Request) -> LocalEngine:
        return request.app.state.engine

    @app.get("/health")
    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/stats")
    def stats(request: Request) -> dict[str, Any]:
        return engine(request).stats()

    @app.get("/v1/models")
    def models(request: Request) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": name, "object": "model", "owned_by": "runtune"} for name in engine(request).model_ids()],
        }

    @app.post("/v1/load_lora_adapter")
    async def load_adapter(request: Request) -> Response:
        body = await _json_body(request)
        name, path = body.get("lora_name"), body.get("lora_path")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("lora_name is required", param="lora_name")
        if not isinstance(path, str) or not path:
            raise InvalidRequest("lora_path is required", param="lora_path")
        await run_in_threadpool(engine(request).load_adapter, name, path)
        return Response(f"Success: LoRA adapter '{name}' added successfully.", media_type="text/plain")

    @app.post("/v1/unload_lora_adapter")
    async def unload_adapter(request: Request) -> Response:
        body = await _json_body(request)
        name = body.get("lora_name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest("lora_name is required", param="lora_name")
        await run_in_threadpool(engine(request).unload_adapter, name)
        return Response(f"Success: LoRA adapter '{name}' removed successfully.", media_type="text/plain")

    @app.post(SCORE_PATH)
    async def score(request: Request) -> Response:
        """Runtune's scoring extension (vLLM has none): every continuation of one conversation in one
        request, submitted together so they run as one batch; each score is the sum of its tokens'
        log-probabilities after the prefix all continuations share (as `OpenAIEngine.score` computes
        from vLLM's `prompt_logprobs`, so both engines rank labels alike). With `"best_only": true` the
        answer is only the index of the most likely continuation (`runtune.best`), found best first:
        a tuned classifier's winner costs about a label's length of steps, not every label's tokens."""
        core = engine(request)
        with core.batcher.arriving():
            body = await _json_body(request)
            model = body.get("model")
            if not isinstance(model, str):
                raise InvalidRequest("model is required", param="model")
            continuations = body.get("continuations")
            if (
                not isinstance(continuations, list)
                or not 1 <= len(continuations) <= MAX_CONTINUATIONS
                or not all(isinstance(text, str) and text for text in continuations)
            ):
                raise InvalidRequest(
                    f"continuations must be a list of 1 to {MAX_CONTINUATIONS} non-empty strings",
                    param="continuations",
                )

            best_only = body.get("best_only", False)
            if not isinstance(best_only, bool):
                raise InvalidRequest("best_only must be a boolean", param="best_only")

            def scoring() -> ScoreSetRequest:
                # Images decoded and the chat template rendered once for all continuations.
                return core.score_set(model, parse_messages(body.get("messages")), continuations, best_only=best_only)

            sink = core.submit(await run_in_threadpool(scoring))
        if best_only:
            return JSONResponse({"object": "runtune.best", "model": model, "index": await _result(sink, "best")})
        return JSONResponse({"object": "runtune.scores", "model": model, "scores": await _result(sink, "scores")})

    @app.post("/tokenize")
    async def tokenize(request: Request) -> Response:
        """vLLM's `/tokenize`: a prompt's token ids (`prompt`, or `messages` rendered by the chat
        template as chat completions render them; images are not expanded)."""
        body = await _json_body(request)
        model = body.get("model")
        if not isinstance(model, str):
            raise InvalidRequest("model is required", param="model")
        core = engine(request)
        if "messages" in body:
            continue_final = bool(body.get("continue_final_message"))
            if not continue_final and body.get("add_generation_prompt") is False:
                raise InvalidRequest("add_generation_prompt=false needs continue_final_message", param="messages")
            conversation = parse_messages(body.get("messages"))
            text = (await run_in_threadpool(core.prompt, model, conversation, continue_final=continue_final)).text
            special = False
        else:
            text = body.get("prompt")
            if not isinstance(text, str):
                raise InvalidRequest("prompt or messages is required", param="prompt")
            special = body.get("add_special_tokens", True) is not False
        runtime, _ = core.resolve(model)
        tokens = runtime.tokenizer(text, add_special_tokens=special)["input_ids"]
        return JSONResponse({"count": len(tokens), "tokens": tokens})

    @app.post("/detokenize")
    async def detokenize(request: Request) -> Response:
        body = await _json_body(request)
        model, tokens = body.get("model"), body.get("tokens")
        if not isinstance(model, str):
            raise InvalidRequest("model is required", param="model")
        if not isinstance(tokens, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens):
            raise InvalidRequest("tokens must be a list of token ids", param="tokens")
        runtime, _ = engine(request).resolve(model)
        return JSONResponse({"prompt": runtime.tokenizer.decode(tokens)})

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        core = engine(request)
        with core.batcher.arriving():  # until submitted: a batch about to start waits for this request
            body = await _json_body(request)
            model = body.get("model")
            if not isinstance(model, str):
                raise InvalidRequest("model is required", param="model")
            if body.get("n", 1) != 1:
                raise InvalidRequest("only n=1 is supported", param="n")
            continue_final = bool(body.get("continue_final_message"))
            prompt = await run_in_threadpool(
                lambda: core.prompt(model, parse_messages(body.get("messages")), continue_final=continue_final)
            )
            scoring = body.get("prompt_logprobs") is not None
            work = ScoreRequest(**vars(prompt)) if scoring else _generate_request(body, prompt, settings.max_new_tokens)
            sink = core.submit(work)
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": model}
        if scoring:
            return await _scored(sink, prompt, head)
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else [s for s in stops if isinstance(s, str) and s]
        completion = _Completion(prompt.runtime.tokenizer, stops)
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(_stream(completion, sink, head, usage), media_type="text/event-stream")
        logprobs = None
        async for kind, value in completion.events(sink):
            if kind == "token" and completion.finish_reason is None:
                completion.add(value)
            elif kind == "logprobs":
                logprobs = {"content": value}
            elif kind == "finish":
                completion.finish_reason = completion.finish_reason or value
        return JSONResponse(
            {
                **head,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": completion.text},
                        "finish_reason": completion.finish_reason,
                        "logprobs": logprobs,
                    }
                ],
                "usage": _usage(completion),
            }
        )

    return app


def _generate_request(body: dict[str, Any], prompt: Prompt, ceiling: int) -> GenerateRequest:
    sampling = Sampling(
        temperature=_number(body, "temperature", 1.0, 0.0, 2.0), top_p=_number(body, "top_p", 1.0, 0.0, 1.0)
    )
    seed = body.get("seed")
    top = body.get("top_logprobs")
    if top is not None and (not isinstance(top, int) or isinstance(top, bool) or not 0 <= top <= MAX_TOP_LOGPROBS):
        raise InvalidRequest(f"top_logprobs must be an integer in [0, {MAX_TOP_LOGPROBS}]", param="top_logprobs")
    if top is not None and not body.get("logprobs"):
        raise InvalidRequest("top_logprobs needs logprobs=true", param="top_logprobs")
    if body.get("logprobs") and body.get("stream"):
        raise InvalidRequest("logprobs are not streamed by this engine", param="logprobs")
    return GenerateRequest(
        **vars(prompt),
        max_tokens=_max_tokens(body, ceiling),
        sampling=sampling,
        seed=seed if isinstance(seed, int) else None,
        top_logprobs=(top or 0) if body.get("logprobs") else None,
        token_ids=bool(body.get("return_tokens_as_token_ids")),
    )


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise InvalidRequest("The body must be JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The body must be a JSON object")
    return body


def _usage(completion: _Completion) -> dict[str, int]:
    done = len(completion.ids)
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": done,
        "total_tokens": completion.prompt_tokens + done,
    }


async def _result(sink: Sink, wanted: str) -> Any:
    while True:
        kind, value = await sink.queue.get()
        if kind == "error":
            raise value
        if kind == wanted:
            return value


async def _scored(sink: Sink, prompt: Prompt, head: dict[str, Any]) -> Response:
    completion = _Completion(prompt.runtime.tokenizer, [])
    entries: list[Any] = []
    async for kind, value in completion.events(sink):
        if kind == "prompt_logprobs":
            entries = value
    return JSONResponse(
        {
            **head,
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": ""},
                    "finish_reason": "length",
                    "logprobs": None,
                }
            ],
            "prompt_logprobs": entries,
            "usage": {
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": 0,
                "total_tokens": completion.prompt_tokens,
            },
        }
    )


async def _stream(completion: _Completion, sink: Sink, head: dict[str, Any], usage: bool) -> AsyncIterator[bytes]:
    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {
            **head,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }
        return f"data: {json.dumps(chunk)}\n\n".encode()

    yield event({"role": "assistant", "content": ""})
    try:
        async for kind, value in completion.events(sink):
            if kind == "token" and completion.finish_reason is None:
                if delta := completion.add(value):
                    yield event({"content": delta})
            elif kind == "finish":
                yield event({}, completion.finish_reason or value)
    except RuntuneError as exc:
        yield f"data: {json.dumps(exc.envelope())}\n\n".encode()
    if usage:
        tail = {**head, "object": "chat.completion.chunk", "choices": [], "usage": _usage(completion)}
        yield f"data: {json.dumps(tail)}\n\n".encode()
    yield b"data: [DONE]\n\n"
