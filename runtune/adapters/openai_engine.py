"""The engine port over HTTP: vLLM's OpenAI-compatible server (or the local engine, same protocol)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx

from runtune.errors import InvalidRequest, UpstreamUnavailable


class OpenAIEngine:
    def __init__(self, base_url: str, *, api_key: str | None = None, timeout_s: float = 300.0) -> None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), headers=headers, timeout=httpx.Timeout(timeout_s, connect=10.0)
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def chat(self, body: dict[str, Any]) -> dict[str, Any]:
        response = await self._post("/v1/chat/completions", {**body, "stream": False})
        return response.json()

    async def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        request = self._http.build_request("POST", "/v1/chat/completions", json={**body, "stream": True})
        try:
            response = await self._http.send(request, stream=True)
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

    async def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return await self._request("POST", path, json=body)

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
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
    if 400 <= response.status_code < 500:
        raise InvalidRequest(f"The inference engine refused the request: {message}", code="engine_rejected")
    raise UpstreamUnavailable(f"The inference engine failed: {message}")
