"""Errors -> HTTP: one status map and one JSON envelope for every error.

``{"error": {"type": ..., "message": ..., "request_id": ..., "detail": ...}}`` is the body
of every error response (404 and 405 from routing too); no stack trace is ever sent.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import (
    ConfigurationError,
    DataFormatError,
    DatasetNotFoundError,
    ExtractionError,
    NotFoundError,
    ProtocolError,
    RasterUnsupportedError,
    ReadError,
    TessellumError,
    UpstreamError,
    ValidationError,
)

__all__ = [
    "DEFAULT_STATUS_CODES",
    "ErrorEnvelope",
    "ServiceError",
    "add_exception_handlers",
    "error_body",
    "error_responses",
]

log = logging.getLogger("tessellum.service")


class ServiceError(TessellumError):
    """An error raised by the service layer itself (auth, limits), with its status."""

    def __init__(
        self,
        message: str,
        *,
        status: int,
        type: str,
        detail: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type
        self.detail = detail
        self.headers = headers or {}


# most specific first: the first matching class wins
DEFAULT_STATUS_CODES: dict[type[BaseException], int] = {
    DatasetNotFoundError: 404,
    ValidationError: 422,
    RasterUnsupportedError: 422,
    NotFoundError: 502,  # an upstream object is missing: the upstream is at fault
    UpstreamError: 502,
    ProtocolError: 502,
    DataFormatError: 502,
    ExtractionError: 504,
    ReadError: 502,
    ConfigurationError: 500,
    TessellumError: 500,
}
"""Exception class -> HTTP status (titiler's ``DEFAULT_STATUS_CODES`` pattern)."""

_REASONS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "upstream_error",
    504: "timeout",
}


class ErrorInfo(BaseModel):
    """What went wrong."""

    type: str
    """Machine-readable kind (``validation_error``, ``unknown_dataset``, ...)."""
    message: str
    request_id: str | None = None
    detail: Any = None


class ErrorEnvelope(BaseModel):
    """The body of every error response."""

    error: ErrorInfo


_DESCRIPTIONS = {
    400: "Malformed request body",
    401: "Missing or invalid API key",
    404: "Unknown route or resource",
    422: "Invalid request, unknown dataset or a limit exceeded",
    429: "Rate limited (see Retry-After)",
    500: "Unexpected error",
    502: "Every requested dataset failed upstream",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` documenting the error envelope for ``statuses``."""
    return {
        s: {"model": ErrorEnvelope, "description": _DESCRIPTIONS.get(s, "Error")} for s in statuses
    }


def error_body(type: str, message: str, request_id: str | None, detail: Any = None) -> dict:
    """The error envelope."""
    return {"error": {"type": type, "message": message, "request_id": request_id, "detail": detail}}


def _rid(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


def _respond(
    request: Request,
    status: int,
    type: str,
    message: str,
    detail: Any = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    rid = _rid(request)
    hdrs = {**(headers or {}), **({"X-Request-ID": rid} if rid else {})}
    return JSONResponse(error_body(type, message, rid, detail), status_code=status, headers=hdrs)


def _clean_errors(errors: list[dict]) -> list[dict]:
    # pydantic's ctx may hold exception objects and inputs can be huge: keep it JSON-safe
    out = []
    for e in errors[:50]:
        out.append(
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
        )
    return out


async def _not_json(request: Request, errors: list[dict]) -> str | None:
    """Why the request body is not JSON text (None when it is): FastAPI reports a body
    that does not parse (``json_invalid``) and an empty body (the body ``missing``) as
    validation errors, where docs/service.md promises 400."""
    for e in errors:
        if e.get("type") == "json_invalid":
            why = (e.get("ctx") or {}).get("error", "JSON decode error")
            return f"the request body is not JSON text: {why} (at character {e['loc'][-1]})"
    if [(e.get("type"), tuple(e.get("loc", ()))) for e in errors] != [("missing", ("body",))]:
        return None
    # empty, or the JSON text `null` (which is JSON, of the wrong type: a 422)
    try:
        empty = not await request.body()  # cached by the route that read it
    except Exception:  # the stream is gone: fall back on the declared length
        empty = request.headers.get("content-length", "0") == "0"
    return "the request body is empty: expected a JSON object" if empty else None


def _message(exc: Any) -> str:
    """The 422 message, worded as in-process requests word it (one ``field: problem
    (got value)`` per field; of a geometry's two forms, only the one it was written in)."""
    from ..attributes.models import error_summary

    body_errors = [
        {**e, "loc": tuple(e.get("loc", ()))[1:]}
        for e in exc.errors()[:50]
        if tuple(e.get("loc", ()))[:1] == ("body",)
    ]
    try:
        text = error_summary(body_errors, getattr(exc, "body", None))
    except Exception:  # a summary must never turn a 422 into a 500
        text = ""
    if text:
        return text
    errors = _clean_errors(exc.errors())
    text = "; ".join(
        f"{'.'.join(e['loc'][1:]) or 'body'}: {e['msg'].removeprefix('Value error, ')}"
        for e in errors[:5]
    )
    return text or "invalid request"


def add_exception_handlers(
    app: FastAPI, status_codes: dict[type[BaseException], int] | None = None
) -> None:
    """Install handlers that turn every exception into the envelope.

    Args:
        app: the application.
        status_codes: class -> status map (default :data:`DEFAULT_STATUS_CODES`).
    """
    codes = status_codes or DEFAULT_STATUS_CODES

    async def service_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ServiceError)
        return _respond(request, exc.status, exc.type, str(exc), exc.detail, exc.headers)

    async def validation(request: Request, exc: Exception) -> JSONResponse:
        not_json = await _not_json(request, exc.errors())  # type: ignore[attr-defined]
        if not_json is not None:  # a body that is no JSON text is malformed, not invalid
            return _respond(request, 400, "bad_request", not_json)
        errors = _clean_errors(exc.errors())  # type: ignore[attr-defined]
        return _respond(request, 422, "validation_error", _message(exc), errors)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        status = exc.status_code
        return _respond(
            request,
            status,
            _REASONS.get(status, "http_error"),
            str(exc.detail),
            None,
            dict(exc.headers or {}),
        )

    async def tessellum_error(request: Request, exc: Exception) -> JSONResponse:
        status = next((s for cls, s in codes.items() if isinstance(exc, cls)), 500)
        if status >= 500:
            log.warning("request %s failed: %s: %s", _rid(request), type(exc).__name__, exc)
        return _respond(request, status, type(exc).__name__, str(exc))

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("request %s failed", _rid(request))
        return _respond(request, 500, "internal_error", "internal server error")

    app.add_exception_handler(ServiceError, service_error)
    app.add_exception_handler(RequestValidationError, validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(TessellumError, tessellum_error)
    app.add_exception_handler(Exception, unexpected)
