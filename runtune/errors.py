"""One error hierarchy, rendered everywhere as the OpenAI error envelope.

`{"error": {"message", "type", "param", "code"}}`: the `openai` SDK parses it, and `param` names the
field a form should highlight. Expected failures are `RuntuneError`s with their status; anything
else is a bug and answers a 500 whose body says nothing about internals.
"""

from __future__ import annotations

from typing import Any


class RuntuneError(Exception):
    status_code = 500
    error_type = "server_error"
    default_code: str | None = None

    def __init_subclass__(
        cls, *, status: int | None = None, error_type: str = "invalid_request_error", code: str | None = None
    ) -> None:
        # A subclass without a status (a finer kind of one of those below) keeps its parent's.
        super().__init_subclass__()
        if status is not None:
            cls.status_code, cls.error_type, cls.default_code = status, error_type, code

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.code = code or self.default_code
        self.headers = headers or {}

    def envelope(self) -> dict[str, Any]:
        return error_envelope(self.message, self.error_type, param=self.param, code=self.code)


# The expected failures: each its status, the envelope's `type` (invalid_request_error unless said)
# and its default `code`.
class InvalidRequest(RuntuneError, status=400): ...


class Unauthenticated(RuntuneError, status=401, error_type="authentication_error", code="invalid_token"): ...


class PermissionDenied(RuntuneError, status=403, error_type="permission_error"): ...


class NotFound(RuntuneError, status=404, code="not_found"): ...


class Conflict(RuntuneError, status=409, code="conflict"): ...


class PayloadTooLarge(RuntuneError, status=413, code="payload_too_large"): ...


class UnsupportedMediaType(RuntuneError, status=415, code="unsupported_media_type"): ...


class Unprocessable(RuntuneError, status=422): ...


class RateLimited(RuntuneError, status=429, error_type="rate_limit_error", code="rate_limit_exceeded"): ...


class UpstreamUnavailable(RuntuneError, status=503, error_type="server_error", code="upstream_unavailable"): ...


def error_envelope(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def not_found(kind: str, resource_id: str) -> NotFound:
    """The one answer for missing and foreign resources alike, so ids cannot be probed."""
    return NotFound(f"No {kind} with id '{resource_id}'", param="id")
