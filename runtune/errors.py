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


class InvalidRequest(RuntuneError):
    status_code = 400
    error_type = "invalid_request_error"


class Unauthenticated(RuntuneError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_token"


class PermissionDenied(RuntuneError):
    status_code = 403
    error_type = "permission_error"


class NotFound(RuntuneError):
    status_code = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


class Conflict(RuntuneError):
    status_code = 409
    error_type = "invalid_request_error"
    default_code = "conflict"


class PayloadTooLarge(RuntuneError):
    status_code = 413
    error_type = "invalid_request_error"
    default_code = "payload_too_large"


class UnsupportedMediaType(RuntuneError):
    status_code = 415
    error_type = "invalid_request_error"
    default_code = "unsupported_media_type"


class Unprocessable(RuntuneError):
    status_code = 422
    error_type = "invalid_request_error"


class RateLimited(RuntuneError):
    status_code = 429
    error_type = "rate_limit_error"
    default_code = "rate_limit_exceeded"


class UpstreamUnavailable(RuntuneError):
    status_code = 503
    error_type = "server_error"
    default_code = "upstream_unavailable"


def error_envelope(
    message: str, error_type: str, *, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def not_found(kind: str, resource_id: str) -> NotFound:
    """The one answer for missing and foreign resources alike, so ids cannot be probed."""
    return NotFound(f"No {kind} with id '{resource_id}'", param="id")
