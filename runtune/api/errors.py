"""FastAPI exception handlers that render every 4xx/5xx as the error envelope."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtune.errors import RuntuneError, error_envelope

log = logging.getLogger("runtune.api")

_STATUS_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


# Union members pydantic names in an error's location ("int", "constrained-int", "literal['auto']"):
# they say which alternative failed, not which field.
_TYPE_TAGS = frozenset({"int", "float", "str", "bool", "bytes", "dict", "list", "none", "json-or-python"})


def _is_field(part: Any) -> bool:
    if isinstance(part, int):
        return True
    text = str(part)
    return not ("[" in text or "-" in text or text in _TYPE_TAGS)


def _param_from_loc(loc: tuple[Any, ...]) -> str | None:
    # ("body", "method", "supervised", "n_epochs", "constrained-int") -> "method.supervised.n_epochs"
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header", "cookie") and _is_field(p)]
    if not parts and loc:
        return str(loc[-1])
    return ".".join(parts) or None


async def _runtune_error(_: Request, exc: RuntuneError) -> JSONResponse:
    return JSONResponse(exc.envelope(), status_code=exc.status_code, headers=exc.headers)


def _problems(errors: list[Any]) -> list[dict[str, Any]]:
    """One problem per field, in the order pydantic found them. A union (`int | "auto"`) fails once
    per member at the same field: the first member's reason is kept ("greater than or equal to 1"),
    not the later "should be 'auto'"."""
    problems: dict[str | None, dict[str, Any]] = {}
    for error in errors:
        param = _param_from_loc(tuple(error.get("loc", ())))
        problems.setdefault(param, {"param": param, "message": error.get("msg", "invalid request")})
    return list(problems.values())


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    if first.get("type") == "json_invalid":
        message = f"Request body is not valid JSON: {first.get('ctx', {}).get('error', first.get('msg'))}"
        return JSONResponse(error_envelope(message, "invalid_request_error", code="invalid_value"), status_code=400)
    problems = _problems(errors) or [{"param": None, "message": "invalid request"}]
    param, message = problems[0]["param"], problems[0]["message"]
    if param:
        message = f"Invalid value for '{param}': {message}"
    if len(problems) > 1:
        message += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
    # `problems` is additive: the SDKs read message/type/param/code and ignore the rest, and a form
    # shows every problem next to its field at once instead of one per submit.
    envelope = error_envelope(message, "invalid_request_error", param=param, code="invalid_value")
    envelope["error"]["problems"] = problems
    return JSONResponse(envelope, status_code=400)


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code)
    error_type = _STATUS_TYPES.get(
        exc.status_code, "invalid_request_error" if exc.status_code < 500 else "server_error"
    )
    message = exc.detail if isinstance(exc.detail, str) else "request failed"
    return JSONResponse(
        error_envelope(message, error_type, code=code), status_code=exc.status_code, headers=exc.headers
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", extra={"path": request.url.path, "error_class": type(exc).__name__})
    return JSONResponse(
        error_envelope("The server had an error while processing your request.", "server_error"),
        status_code=500,
    )


def install_error_handlers(app: Starlette) -> None:
    """For FastAPI apps and the plain Starlette gateway alike."""
    app.add_exception_handler(RuntuneError, _runtune_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected_error)
