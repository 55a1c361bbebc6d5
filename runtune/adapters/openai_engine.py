"""The engine port over HTTP: vLLM's OpenAI-compatible server (or the local engine, same protocol)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator
from typing import Any

import httpx

from runtune.errors import InvalidRequest, UpstreamUnavailable
from runtune.ports.engine import EngineModelNotFound, ScoringMethod

# Runtune's scoring extension (the local engine has it, vLLM does not): all continuations in one request.
SCORE_PATH = "/v1/runtune/score"
LANES = 16
# A user text whose rendering shows where the template's own text around it starts and ends.
PROBE_TEXT = "Runtune probe"
CONNECTIONS_PER_LANE = 16  # 256 in all: long-lived streams never wait for a connection
# vLLM's default `--max-logprobs`: the most alternatives one position's log-probabilities may list.
TOP_LOGPROBS = 20
# Learning a label set's tokens: at most this many `/tokenize` and `/detokenize` requests at once.
PLAN_REQUESTS = 8


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
        top_logprobs: int = TOP_LOGPROBS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`transport`: httpx's (an in-process ASGI app, in tests); `top_logprobs`: the engine's
        `--max-logprobs`, the alternatives a prefix search asks for per position."""
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        # Several small connection pools rather than one big one: httpcore scans every connection of
        # its pool for every request, so with an evaluation's hundreds of short requests in flight the
        # client's own bookkeeping was the bottleneck (measured with label scoring: 27 -> 85 samples/s).
        self._top_logprobs = top_logprobs
        self._lanes = [
            httpx.AsyncClient(
                base_url=base_url.rstrip("/"),
                headers=headers,
                auth=_HeaderAuth(authorization) if authorization else None,
                timeout=httpx.Timeout(timeout_s, connect=10.0),
                limits=httpx.Limits(max_connections=CONNECTIONS_PER_LANE, max_keepalive_connections=8),
                transport=transport,
            )
            for _ in range(LANES)
        ]
        self._next_lane = itertools.cycle(self._lanes)
        # Whether the engine offers Runtune's scoring extension; None until the first score call tells.
        self._batched_scoring: bool | None = None
        # Per model: the chat template's text from the end of a user's text to the model's answer.
        self._openings: dict[str, str] = {}
        # Per (model, continuations): their tokens and the prefixes a prefix search may send.
        self._plans: dict[tuple[str, tuple[str, ...]], asyncio.Future[_LabelPlan]] = {}

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

    async def scoring_methods(self) -> list[ScoringMethod]:
        """The exact label-scoring methods this engine offers: Runtune's scoring extension where it
        exists (the local engine: every label scored, or the winner found best first), per-label
        `prompt_logprobs` where it does not (vLLM), and the prefix search on both (asked once: a
        missing route answers 404 without the error envelope)."""
        if self._batched_scoring is None:
            response = await next(self._next_lane).post(SCORE_PATH, json={})
            self._batched_scoring = not (response.status_code == 404 and not _has_error_envelope(response))
        if self._batched_scoring:
            return [ScoringMethod.batched, ScoringMethod.best_first, ScoringMethod.prefix_search]
        return [ScoringMethod.per_label, ScoringMethod.prefix_search]

    async def best(
        self, model: str, messages: list[dict[str, Any]], continuations: list[str], method: ScoringMethod
    ) -> int:
        """The index of the most likely continuation (the first of equals), by `method`: all exact;
        the prefix search and the best-first search compute only what the ranking needs."""
        if method is ScoringMethod.prefix_search:
            return (await self._prefix_search(model, messages, continuations, exhaustive=False))[0]
        if method is ScoringMethod.best_first:
            body = {"model": model, "messages": messages, "continuations": continuations, "best_only": True}
            response = await next(self._next_lane).post(SCORE_PATH, json=body)
            _raise_for(response)
            return int(response.json()["index"])
        scores = await self.score(model, messages, continuations, method)
        return max(range(len(scores)), key=scores.__getitem__)

    async def score(
        self,
        model: str,
        messages: list[dict[str, Any]],
        continuations: list[str],
        method: ScoringMethod | None = None,
    ) -> list[float]:
        """Every continuation's log-likelihood after the conversation, for label scoring.

        An engine that offers Runtune's scoring extension (`POST /v1/runtune/score`: the local engine)
        gets one request per conversation and runs all continuations as one batch. vLLM has no scoring
        endpoint: there each continuation is a chat completion whose `prompt_logprobs` cover the
        conversation rendered up to the continuation's end (`continue_final_message`), all sent
        together on one connection pool so the engine batches them. (vLLM does not read its prefix
        cache for `prompt_logprobs` requests: each computes the shared prompt again.) Which one applies
        is learnt from the first call: a missing route answers 404 without the error envelope.
        `method` (default: the single-request one the engine offers) may name the prefix search, which
        here continues every label (exhaustively) and gives the same scores."""
        if method is ScoringMethod.prefix_search:
            return (await self._prefix_search(model, messages, continuations, exhaustive=True))[1]
        lane = next(self._next_lane)
        if self._batched_scoring is not False and method is not ScoringMethod.per_label:
            response = await lane.post(
                SCORE_PATH, json={"model": model, "messages": messages, "continuations": continuations}
            )
            if response.status_code == 404 and not _has_error_envelope(response):
                self._batched_scoring = False
            else:
                _raise_for(response)
                self._batched_scoring = True
                return [float(score) for score in response.json()["scores"]]
        return tail_scores(await self._per_label(model, messages, continuations, lane))

    async def _per_label(
        self, model: str, messages: list[dict[str, Any]], continuations: list[str], lane: httpx.AsyncClient
    ) -> list[list[tuple[int, float]]]:
        """Every continuation's prompt tokens and their log-probabilities, a request per continuation."""
        opening = await self._turn_opening(model, lane)
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
                        "messages": _answered(messages, opening + continuation),
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
        return [prompt_token_logprobs(reply.json()) for reply in answered]

    async def _prefix_search(
        self, model: str, messages: list[dict[str, Any]], continuations: list[str], *, exhaustive: bool
    ) -> tuple[int, list[float]]:
        """Label scoring in requests that read vLLM's prefix cache (`prompt_logprobs` requests do not):
        the conversation's generation prompt with `max_tokens=1` and the top log-probabilities gives
        every label's first token at once; a label prefix is continued (the same request shape, the
        prefix after the template's opening of the model's turn) only while its partial score could
        still win, best first. Log-probabilities only fall as tokens are added, so a finished label
        whose score beats every open prefix's is the exact winner. A token outside the top list has
        only a bound (the list's lowest); a prefix whose bound would be used exactly, or whose text the
        engine does not tokenize back to the same tokens, has its labels scored per label instead.

        Returns the winner's index and, with `exhaustive`, every label's exact score as
        `tail_scores` computes it (the tokens every label shares left out); else the scores of the
        labels finished (the others are their bounds)."""
        lane = next(self._next_lane)
        plan = await self._label_plan(model, continuations, lane)
        # Per label: the log-probability of each of its tokens, as found.
        found: dict[int, list[float]] = {}
        heap: list[tuple[float, int, tuple[int, ...], bool]] = []  # (-bound, order, prefix, exact)
        order = itertools.count()
        partial: dict[tuple[int, ...], list[float]] = {(): []}

        async def expand(prefix: tuple[int, ...]) -> None:
            body: dict[str, Any] = {
                "model": model,
                "max_tokens": 1,
                "temperature": 0,
                "logprobs": True,
                "top_logprobs": self._top_logprobs,
                "return_tokens_as_token_ids": True,
            }
            if prefix:
                text = plan.texts[prefix]
                body |= {
                    "messages": _answered(messages, plan.opening + text),
                    "add_generation_prompt": False,
                    "continue_final_message": True,
                }
            else:
                body["messages"] = messages
            top = first_token_logprobs((await self._post("/v1/chat/completions", body, lane)).json())
            floor = min(top.values())
            for token in sorted({tokens[len(prefix)] for tokens in plan.under(prefix)}):
                child = (*prefix, token)
                known = token in top
                partial[child] = [*partial[prefix], top[token] if known else floor]
                heapq.heappush(heap, (-sum(partial[child]), next(order), child, known))

        async def per_label(prefix: tuple[int, ...]) -> None:
            labels = [i for i, tokens in enumerate(plan.tokens) if tokens[: len(prefix)] == prefix]
            sequences = await self._per_label(model, messages, [continuations[i] for i in labels], lane)
            for index, sequence in zip(labels, sequences, strict=True):
                tokens = plan.tokens[index]
                tail = sequence[len(sequence) - len(tokens) :]
                if [token for token, _ in tail] != list(tokens):
                    raise UpstreamUnavailable("The inference engine tokenized a label differently when scoring it")
                found[index] = [logprob for _, logprob in tail]
                heapq.heappush(heap, (-sum(found[index]), next(order), tokens, True))

        await expand(())
        winner: int | None = None
        while heap:
            _, _, prefix, exact = heapq.heappop(heap)
            finished = [i for i, tokens in enumerate(plan.tokens) if tokens == prefix]
            if exact and finished:
                for index in finished:
                    found.setdefault(index, partial.get(prefix, []))
                if winner is None:
                    winner = min(finished)
                if not exhaustive:
                    break
            elif exact and prefix in plan.texts:
                await expand(prefix)
            elif not all(i in found for i, t in enumerate(plan.tokens) if t[: len(prefix)] == prefix):
                await per_label(prefix)
        assert winner is not None
        if not exhaustive:
            return winner, [sum(found[i]) if i in found else float("-inf") for i in range(len(continuations))]
        shared = plan.shared
        return winner, [sum(found[i][shared:]) for i in range(len(continuations))]

    async def _label_plan(self, model: str, continuations: list[str], lane: httpx.AsyncClient) -> _LabelPlan:
        """The continuations' tokens after the generation prompt, and the text of every proper prefix
        of them that the engine's chat template and tokenizer turn back into exactly those tokens (a
        prefix search sends text: a request cannot carry token ids with an image). Learnt from the
        engine's `/tokenize` and `/detokenize` on the probe conversation, once per label set."""
        key = (model, tuple(continuations))
        if (known := self._plans.get(key)) is None:
            # Learnt once: the samples scored meanwhile wait for the same plan.
            known = self._plans[key] = asyncio.ensure_future(self._learn_plan(model, continuations, lane))
        try:
            return await asyncio.shield(known)
        except Exception:
            if self._plans.get(key) is known:
                del self._plans[key]  # a failure is not remembered: the next sample tries again
            raise

    async def _learn_plan(self, model: str, continuations: list[str], lane: httpx.AsyncClient) -> _LabelPlan:
        opening = await self._turn_opening(model, lane)
        probe = {"role": "user", "content": [{"type": "text", "text": PROBE_TEXT}]}
        gate = asyncio.Semaphore(PLAN_REQUESTS)

        async def tokens(text: str | None) -> list[int]:
            if text is None:
                body = {"model": model, "messages": [probe], "add_generation_prompt": True}
            else:
                body = {
                    "model": model,
                    "messages": _answered([probe], opening + text),
                    "add_generation_prompt": False,
                    "continue_final_message": True,
                }
            async with gate:
                reply = await self._post("/tokenize", body, lane)
            return [int(token) for token in reply.json()["tokens"]]

        head = await tokens(None)
        fulls = await asyncio.gather(*(tokens(text) for text in continuations))
        label_tokens = []
        for full in fulls:
            if full[: len(head)] != head or len(full) == len(head):
                raise InvalidRequest("The engine's tokenizer merges a label with the prompt before it", param="labels")
            label_tokens.append(tuple(full[len(head) :]))
        prefixes = sorted({tokens[:k] for tokens in label_tokens for k in range(1, len(tokens))})
        head_text = await self._detokenize(model, head, lane)

        async def text_of(prefix: tuple[int, ...]) -> str | None:
            async with gate:
                text = (await self._detokenize(model, [*head, *prefix], lane))[len(head_text) :]
            return text if text and await tokens(text) == [*head, *prefix] else None

        texts = await asyncio.gather(*(text_of(prefix) for prefix in prefixes))
        return _LabelPlan(
            opening, label_tokens, {prefix: text for prefix, text in zip(prefixes, texts, strict=True) if text}
        )

    async def _detokenize(self, model: str, tokens: list[int], lane: httpx.AsyncClient) -> str:
        reply = await self._post("/detokenize", {"model": model, "tokens": tokens}, lane)
        return str(reply.json().get("prompt") or "")

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
        for attempt in range(2):
            try:
                response = await (lane or next(self._next_lane)).request(method, path, **kwargs)
                break
            except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
                # A kept-alive connection the server closed (uvicorn, vLLM's included, after 5 s idle)
                # just as the request went out: once more, on a fresh connection. Not for adapter loads,
                # which are not safe to repeat.
                if attempt or path.endswith("_lora_adapter"):
                    raise UpstreamUnavailable("The inference engine is unavailable; try again shortly") from exc
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


class _LabelPlan:
    """A label set's tokens on one model, and the texts of the prefixes a prefix search may send."""

    def __init__(self, opening: str, tokens: list[tuple[int, ...]], texts: dict[tuple[int, ...], str]) -> None:
        self.opening, self.tokens, self.texts = opening, tokens, texts
        shared, shortest = 0, min(len(t) for t in tokens)
        while shared < shortest and len({t[shared] for t in tokens}) == 1:
            shared += 1
        self.shared = shared  # leading tokens every label has (left out of the scores, as `tail_scores`)

    def under(self, prefix: tuple[int, ...]) -> list[tuple[int, ...]]:
        """The labels' tokens that continue `prefix`."""
        return [t for t in self.tokens if len(t) > len(prefix) and t[: len(prefix)] == prefix]


def _answered(messages: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """The conversation with `text` at the end of the user's last turn: after the template's own
    opening of the model's turn, `text` is the start of the model's answer (see `score`)."""
    *history, last = messages
    if last.get("role") != "user":
        raise InvalidRequest("label scoring needs a conversation that ends with a user message", param="messages")
    content = last["content"]
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else list(content)
    return [*history, {**last, "content": [*parts, {"type": "text", "text": text}]}]


def first_token_logprobs(reply: dict[str, Any]) -> dict[int, float]:
    """The first generated position's top log-probabilities, by token id (`return_tokens_as_token_ids`)."""
    try:
        position = reply["choices"][0]["logprobs"]["content"][0]
        entries = [position, *(position.get("top_logprobs") or [])]
        return {int(str(e["token"]).removeprefix("token_id:")): float(e["logprob"]) for e in entries}
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise UpstreamUnavailable("The inference engine returned no top log-probabilities by token id") from exc
