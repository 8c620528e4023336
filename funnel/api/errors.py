"""One place mapping errors to HTTP responses: the taxonomy's status, 4xx for bad requests, bare 500s.

Every error body is ``{"error": {"code", "message", "field"}, "request_id"}``. A
:class:`~funnel.core.errors.FunnelError` gets its status from
:func:`funnel.core.errors.http_status`; a request the schema rejects gets 422 (400 for a body that
is not JSON) with the offending field named; an unknown exception gets a generic 500 that names
only the request id (the traceback goes to the server log with that id, never to the client).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from funnel.core.errors import FunnelError, ValidationError, http_status

log = logging.getLogger(__name__)
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
    503: "unavailable",
}


def request_id_of(request: Request) -> str:
    """The id the middleware gave this request."""
    return str(getattr(request.state, "request_id", "") or request.headers.get("x-request-id", ""))


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """The JSON error response every handler returns."""
    rid = request_id_of(request)
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.errors.labels(code=code).inc()
    body = {"error": {"code": code, "message": message, "field": field}, "request_id": rid}
    return JSONResponse(body, status_code=status, headers={**(headers or {}), "x-request-id": rid})


_WRONG_BRANCH = {"model_attributes_type", "model_type", "list_type"}


def _field_of(loc: tuple[Any, ...]) -> str:
    # a union body (one object | a list) tags locations with the branch's type name: drop it
    parts = [
        str(p)
        for p in loc
        if p not in ("body", "query", "path", "header")
        and not (isinstance(p, str) and (p[:1].isupper() or "[" in p))
    ]
    return ".".join(parts) or "body"


def _most_relevant(errors: list[Any]) -> list[Any]:
    """Of a union's errors, those of the branch the input's shape chose (not 'expected a list')."""
    relevant = [e for e in errors if not (e.get("type") in _WRONG_BRANCH and len(e.get("loc", ())) <= 2)]
    return relevant or errors


async def _funnel_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FunnelError)
    status = http_status(exc)
    if status >= 500 and exc.code != "not_trained" and exc.code != "unavailable":
        log.error("request %s failed: %s", request_id_of(request), exc.message)
        return error_response(
            request, status, "internal", f"internal error; request id {request_id_of(request)}"
        )
    field = exc.field if isinstance(exc, ValidationError) else None
    headers = {"retry-after": "1"} if status == 503 else None
    return error_response(request, status, exc.code, exc.message, field, headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = _most_relevant(list(exc.errors()))
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        return error_response(
            request, 400, "bad_json", f"the body is not valid JSON: {first.get('msg')}", "body"
        )
    field = _field_of(tuple(first.get("loc", ())))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return error_response(request, 422, "invalid", f"{field}: {first.get('msg')}{more}", field)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    headers = dict(exc.headers) if exc.headers else None
    message, field = str(exc.detail), None
    if exc.status_code == 400:
        # FastAPI's "error parsing the body": bytes that are not UTF-8 never reach the JSON decoder
        code, field = "bad_json", "body"
        message = f"the body is not valid JSON: {message}"
    elif exc.status_code == 413:  # a chunked body crossed the cap (middleware)
        field = "body"
    return error_response(request, exc.status_code, code, message, field, headers)


async def _unknown_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("request %s failed", request_id_of(request), exc_info=exc)
    return error_response(request, 500, "internal", f"internal error; request id {request_id_of(request)}")


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(FunnelError, _funnel_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unknown_error)
