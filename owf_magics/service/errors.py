"""The service's one error format, ``{"status": "error", "code", "message", "details"}``, for every
failure: bad tokens (401), missing scopes (403), unknown or other tenants' runs (404), invalid
requests (422), and anything unexpected (500, without internals)."""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from owf_magics.errors import ManifestError, OWFError

log = logging.getLogger("owf_magics.service")

#: HTTP statuses for the errors the engine raises on purpose.
STATUS_OF_CODE = {"VALIDATION": 400, "UNAVAILABLE": 422, "CANCELED": 409, "TIMEOUT": 408}
_NAMES = {
    400: "BAD_REQUEST",
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    406: "NOT_ACCEPTABLE",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    422: "VALIDATION",
    503: "UNAVAILABLE",
}


class ApiError(Exception):
    """An HTTP error in the unified format.

    Args:
        status: The HTTP status.
        message: What went wrong and, where there is one, the fix.
        details: Structured facts (JSON).
        code: A stable code (default: from the status, e.g. ``NOT_FOUND``).
        headers: Extra response headers (``WWW-Authenticate`` on 401).
    """

    def __init__(
        self,
        status: int,
        message: str,
        details: Any = None,
        *,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details if details is not None else {}
        self.code = code or _NAMES.get(status, "ERROR")
        self.headers = headers


def error_response(
    status: int, message: str, details: Any = None, *, code: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {
        "status": "error",
        "code": code or _NAMES.get(status, "ERROR"),
        "message": message,
        "details": jsonable(details if details is not None else {}),
    }
    return JSONResponse(body, status_code=status, headers=headers)


def from_owf_error(exc: OWFError) -> ApiError:
    """An engine error as an HTTP error (a manifest's diagnostics in ``details.errors``)."""
    if isinstance(exc, ManifestError):
        return ApiError(
            422,
            exc.message,
            {"errors": [diagnostic(d) for d in exc.diagnostics], "warnings": [diagnostic(d) for d in exc.warnings]},
            code="VALIDATION",
        )
    return ApiError(STATUS_OF_CODE.get(exc.code, 500), exc.message, exc.details, code=exc.code)


def diagnostic(d: Any) -> dict[str, Any]:
    """One diagnostic as the service shows it: code, message, line, step_id, and where and how to fix."""
    return {
        "code": d.code,
        "message": d.message,
        "line": d.line,
        "column": d.column,
        "step_id": d.step_id,
        "path": d.path,
        "file": d.file,
        "hint": d.hint,
    }


def jsonable(value: Any) -> Any:
    """`value` with what JSON cannot hold made plain: NaN and infinities → null, tuples → lists,
    other objects → their text."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def install(app: FastAPI) -> None:
    """Every error the app can produce, in the unified format."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.details, code=exc.code, headers=exc.headers)

    @app.exception_handler(OWFError)
    async def owf_error(request: Request, exc: OWFError) -> JSONResponse:
        err = from_owf_error(exc)
        return error_response(err.status, err.message, err.details, code=err.code)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"loc": [str(p) for p in e.get("loc", ())], "message": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        where = ".".join(problems[0]["loc"]) if problems else "the request"
        text = problems[0]["message"] if problems else "invalid request"
        return error_response(422, f"invalid request: {where}: {text}", {"errors": problems}, code="VALIDATION")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "HTTP error"
        return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        error_id = uuid.uuid4().hex[:12]
        log.error(
            "internal error %s on %s %s",
            error_id,
            request.method,
            request.url.path,
            exc_info=exc,
            extra={"error_id": error_id, "request_id": getattr(request.state, "request_id", None)},
        )
        return error_response(
            500, "internal error (the server's log has the details)", {"error_id": error_id}, code="INTERNAL_ERROR"
        )
