"""The engine port over HTTP: vLLM's OpenAI-compatible server (or the local engine, same protocol)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator
from typing import Any

import httpx

from runtune.errors import InvalidRequest, UpstreamUnavailable
from runtune.ports.engine import EngineModelNotFound

# Runtune's scoring extension (the local engine has it, vLLM does not): all continuations in one request.
SCORE_PATH = "/v1/runtune/score"
LANES = 16
# A user text whose rendering shows where the template's own text around it starts and ends.
PROBE_TEXT = "Runtune probe"
CONNECTIONS_PER_LANE = 16  # 256 in all: long-lived streams never wait for a connection


class _HeaderAuth(httpx.Auth):
    """An `Authorization` header computed per request (a cached Google ID token for Cloud Run IAM);
    awaited, because refreshing it is a network call that must not block the event loop."""

    def __init__(self, authorization: Callable[[], Awaitable[str]]) -> None:
        self._authorization = authorization

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        raise RuntimeError("The engine's clients are asynchronous")

    async def async_auth_flow(self, request: httpx.Request) -> AsyncGenerator[httpx.Request, httpx.Response]:
        request.headers["authorization"] = await self._authorization()
        yield request


class OpenAIEngine:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        authorization: Callable[[], Awaitable[str]] | None = None,
        timeout_s: float = 300.0,
    ) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        # Several small connection pools rather than one big one: httpcore scans every connection of
        # its pool for every request, so with an evaluation's hundreds of short requests in flight the
        # client's own bookkeeping was the bottleneck (measured with label scoring: 27 -> 85 samples/s).
        self._lanes = [
            httpx.AsyncClient(
                base_url=base_url.rstrip("/"),
                headers=headers,
                auth=_HeaderAuth(authorization) if authorization else None,
                timeout=httpx.Timeout(timeout_s, connect=10.0),
                limits=httpx.Limits(max_connections=CONNECTIONS_PER_LANE, max_keepalive_connections=8),
            )
            for _ in range(LANES)
        ]
        self._next_lane = itertools.cycle(self._lanes)
        # Whether the engine offers Runtune's scoring extension; None until the first score call tells.
        self._batched_scoring: bool | None = None
        # Per model: the chat template's text from the end of a user's text to the model's answer.
        self._openings: dict[str, str] = {}

    async def aclose(self) -> None:
        await asyncio.gather(*(lane.aclose() for lane in self._lanes))

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._post("/v1/chat/completions", {**body, "stream": False})
        return response.json()

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        http = next(self._next_lane)
        request = http.build_request("POST", "/v1/chat/completions", json={**body, "stream": True})
        try:
            response = await http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise UpstreamUnavailable("The inference engine is unavailable; try again shortly") from exc
        try:
            if response.status_code >= 400:
                await response.aread()
                _raise_for(response)
            async for chunk in response.aiter_raw():
                yield chunk
        finally:
            await response.aclose()

    async def models(self) -> list[str]:
        response = await self._request("GET", "/v1/models")
        return [model["id"] for model in response.json().get("data", [])]

    async def load_adapter(self, name: str, path: str) -> None:
        await self._post("/v1/load_lora_adapter", {"lora_name": name, "lora_path": path})

    async def unload_adapter(self, name: str) -> None:
        await self._post("/v1/unload_lora_adapter", {"lora_name": name})

    async def score(self, model: str, messages: list[dict[str, Any]], continuations: list[str]) -> list[float]:
        """Every continuation's log-likelihood after the conversation, for label scoring.

        An engine that offers Runtune's scoring extension (`POST /v1/runtune/score`: the local engine)
        gets one request per conversation and runs all continuations as one batch. vLLM has no scoring
        endpoint: there each continuation is a chat completion whose `prompt_logprobs` cover the
        conversation rendered up to the continuation's end (`continue_final_message`), all sent
        together on one connection pool so the engine batches them. (vLLM does not read its prefix
        cache for `prompt_logprobs` requests: each computes the shared prompt again.) Which one applies
        is learnt from the first call: a missing route answers 404 without the error envelope."""
        lane = next(self._next_lane)
        if self._batched_scoring is not False:
            response = await lane.post(
                SCORE_PATH, json={"model": model, "messages": messages, "continuations": continuations}
            )
            if response.status_code == 404 and not _has_error_envelope(response):
                self._batched_scoring = False
            else:
                _raise_for(response)
                self._batched_scoring = True
                return [float(score) for score in response.json()["scores"]]
        opening = await self._turn_opening(model, lane)
        *history, last = messages
        if last.get("role") != "user":
            raise InvalidRequest("label scoring needs a conversation that ends with a user message", param="messages")
        content = last["content"]
        parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
        replies = await asyncio.gather(
            *(
                self._post(
                    "/v1/chat/completions",
                    {
                        "model": model,
                        # The label goes at the end of the user's turn, after the template's own
                        # opening of the model's turn: an assistant message cannot carry it, since
                        # Gemma 4's template renders a model turn in history without the empty
                        # thinking block its generation prompt (and so training) puts before the
                        # answer, and strips that block from an assistant message's text (the
                        # render then fails). `/v1/completions` with a rendered prompt cannot carry
                        # the sample's image. vLLM renders with `tokenize=False` and encodes the
                        # special tokens in the text, so these are the trained tokens exactly.
                        "messages": [
                            *history,
                            {**last, "content": [*parts, {"type": "text", "text": opening + continuation}]},
                        ],
                        "add_generation_prompt": False,
                        "continue_final_message": True,
                        "max_tokens": 1,
                        "temperature": 0,
                        "prompt_logprobs": 0,
                    },
                    lane,
                )
                for continuation in continuations
            ),
            return_exceptions=True,  # all finished before any error is raised: no request left behind
        )
        if failed := next((reply for reply in replies if isinstance(reply, BaseException)), None):
            raise failed
        answered = [reply for reply in replies if isinstance(reply, httpx.Response)]
        return tail_scores([prompt_token_logprobs(reply.json()) for reply in answered])

    async def _turn_opening(self, model: str, lane: httpx.AsyncClient) -> str:
        """What the engine's chat template writes between the user's last text and the model's answer:
        the end of the user's turn and the generation prompt (Gemma 4: `<turn|>\n<|turn>model\n` and
        the empty thinking block; Gemma 4 E2B/E4B's template has no block). Learnt from the engine
        (vLLM's `/tokenize` and `/detokenize`), once per model, so the service needs no tokenizer and
        the scored prefix is the template's own generation prompt, the one the trainer trained after."""
        if (known := self._openings.get(model)) is not None:
            return known
        probe = {"role": "user", "content": [{"type": "text", "text": PROBE_TEXT}]}
        tokenized = await self._post(
            "/tokenize", {"model": model, "messages": [probe], "add_generation_prompt": True}, lane
        )
        detokenized = await self._post("/detokenize", {"model": model, "tokens": tokenized.json()["tokens"]}, lane)
        text = str(detokenized.json().get("prompt") or "")
        if PROBE_TEXT not in text:
            raise UpstreamUnavailable("The inference engine's chat template did not render the probe conversation")
        opening = text[text.rindex(PROBE_TEXT) + len(PROBE_TEXT) :]
        self._openings[model] = opening
        return opening

    async def _post(self, path: str, body: dict[str, Any], lane: httpx.AsyncClient | None = None) -> httpx.Response:
        return await self._request("POST", path, json=body, lane=lane)

    async def _request(
        self, method: str, path: str, *, lane: httpx.AsyncClient | None = None, **kwargs: Any
    ) -> httpx.Response:
        try:
            response = await (lane or next(self._next_lane)).request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise UpstreamUnavailable("The inference engine is unavailable; try again shortly") from exc
        _raise_for(response)
        return response


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        error = response.json().get("error") or {}
        message = error.get("message") if isinstance(error, dict) else str(error)
    except ValueError:
        message = response.text[:300]
    if response.status_code == 404 and response.url.path.endswith(
        ("/chat/completions", SCORE_PATH, "/tokenize", "/detokenize")
    ):
        # vLLM (and the local engine) answer 404 for a model they do not serve.
        raise EngineModelNotFound(f"The inference engine refused the request: {message}", code="engine_rejected")
    if 400 <= response.status_code < 500:
        raise InvalidRequest(f"The inference engine refused the request: {message}", code="engine_rejected")
    raise UpstreamUnavailable(f"The inference engine failed: {message}")


def _has_error_envelope(response: httpx.Response) -> bool:
    """An engine's own refusal (a model it does not serve) carries `error`; a route that does not exist
    answers like any FastAPI app (vLLM's included): `{"detail": "Not Found"}`."""
    try:
        body = response.json()
    except ValueError:
        return False
    return isinstance(body, dict) and "error" in body


def prompt_token_logprobs(reply: dict[str, Any]) -> list[tuple[int, float]]:
    """(token id, log-probability) of every prompt token but the first (which has none)."""
    tokens = []
    for entry in reply.get("prompt_logprobs") or []:
        if not entry:
            continue
        # The prompt token comes first; top-k alternatives (none with prompt_logprobs=0) follow.
        token, info = next(iter(entry.items()))
        tokens.append((int(token), float(info["logprob"])))
    if not tokens:
        raise UpstreamUnavailable("The inference engine returned no prompt log-probabilities")
    return tokens


def tail_scores(sequences: list[list[tuple[int, float]]]) -> list[float]:
    """Sum of each sequence's log-probabilities after the prefix all sequences share."""
    shared = 0
    shortest = min(len(sequence) for sequence in sequences)
    while shared < shortest and len({sequence[shared][0] for sequence in sequences}) == 1:
        shared += 1
    return [sum(logprob for _, logprob in sequence[shared:]) for sequence in sequences]
