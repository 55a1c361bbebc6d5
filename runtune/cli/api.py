"""A small REST client for the CLI: the gateway URL, a fresh bearer token, errors as messages."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import typer
from rich.console import Console

from runtune.cli.credentials import StoredLogin
from runtune.errors import RuntuneError


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(f"{message} (HTTP {status}{f', field {param}' if param else ''})")
        self.status = status
        self.param = param


class ApiClient:
    def __init__(self, login: StoredLogin, *, timeout_s: float = 60.0) -> None:
        self._login = login
        self._http = httpx.Client(base_url=login.gateway_url, timeout=timeout_s)

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        extra_headers = kwargs.pop("headers", {})
        response = self._send(method, path, self._login.fresh_id_token(), extra_headers, kwargs)
        if response.status_code == 401:
            # The ID token may have been revoked (a password change, an emulator restart): a fresh
            # one from the refresh token answers that; a dead session fails in the refresh itself.
            response = self._send(method, path, self._login.fresh_id_token(force=True), extra_headers, kwargs)
        if response.status_code >= 400:
            raise _error(response)
        return response.json() if response.content else None

    def _send(
        self, method: str, path: str, token: str, headers: dict[str, str], kwargs: dict[str, Any]
    ) -> httpx.Response:
        try:
            return self._http.request(method, path, headers={"authorization": f"Bearer {token}", **headers}, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(0, f"Cannot reach the gateway at {self._login.gateway_url}: {exc}") from exc

    def events(self, path: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(event type, payload) pairs of a Server-Sent Events stream, as they arrive."""
        headers = {"authorization": f"Bearer {self._login.fresh_id_token()}", "accept": "text/event-stream"}
        timeout = httpx.Timeout(30.0, read=None)  # a quiet stream is not a dead one: it sends keep-alives
        try:
            with self._http.stream("GET", path, headers=headers, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error(response)
                yield from _parse_events(response.iter_lines())
        except httpx.TransportError as exc:
            raise ApiError(0, f"Lost the event stream from {self._login.gateway_url}: {exc}") from exc

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)


def _parse_events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Server-Sent Events: `event:` names the next `data:` line; comments (keep-alives) are skipped."""
    kind = "message"
    for line in lines:
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            yield kind, json.loads(line[6:])
            kind = "message"


def _error(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        return ApiError(response.status_code, error["message"], error.get("param"))
    except (ValueError, KeyError, TypeError):
        return ApiError(response.status_code, response.text[:200] or response.reason_phrase)


def client(*, timeout_s: float = 60.0) -> ApiClient:
    """A client on the stored login (`runtune login`)."""
    return ApiClient(StoredLogin.load(), timeout_s=timeout_s)


def fail(exc: Exception) -> typer.Exit:
    """What ends a command that failed: its message in red, exit status 1."""
    Console().print(f"[red]{getattr(exc, 'message', None) or exc}[/]")
    return typer.Exit(1)


def call(method: str, path: str, *, timeout_s: float = 60.0, **kwargs: Any) -> Any:
    """One API call on the stored login; an error (the API's, or no login) ends the command."""
    try:
        return client(timeout_s=timeout_s).request(method, path, **kwargs)
    except (ApiError, RuntuneError) as exc:
        raise fail(exc) from exc
