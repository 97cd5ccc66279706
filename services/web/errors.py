"""The one place where failures become HTTP responses: gRPC status codes to HTTP statuses.

A failed backend call keeps its gRPC status name and its message; the app's own checks raise
``ApiError`` with a status of their own (413, 415) or a domain error from ``services.common.errors``,
which takes the gRPC code the status interceptor would give it and then the HTTP status below.
Every error body is ``{"error": {"status": 400, "code": "INVALID_ARGUMENT", "message": "..."}}``.
"""

from __future__ import annotations

import logging
import uuid

import grpc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from services.common.errors import VidsearchError
from services.common.interceptors import status_for

log = logging.getLogger(__name__)

HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    # The target is in the wrong state (e.g. a shard bound to another model): a conflict. A service
    # still starting answers UNAVAILABLE: 503, which clients retry.
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    # The client went away or asked to stop (nginx's and Google's 499 "client closed request").
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.DATA_LOSS: 500,
}
_CODE_NAME = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
              405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA_TYPE",
              416: "RANGE_NOT_SATISFIABLE", 503: "UNAVAILABLE"}


class ApiError(Exception):
    """An error of the web app itself, with its HTTP status."""

    def __init__(self, status: int, message: str, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _CODE_NAME.get(status, "ERROR")
        self.message = message
        self.headers = headers or {}


def error_body(status: int, code: str, message: str) -> dict[str, object]:
    return {"error": {"status": status, "code": code, "message": message}}


def _respond(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status, code, message), status_code=status, headers=headers)


def from_rpc(exc: grpc.aio.AioRpcError) -> JSONResponse:
    """A failed backend call as the HTTP response with the matching status and the same message."""
    code = exc.code()
    status = HTTP_STATUS.get(code, 500)
    headers = {"WWW-Authenticate": 'ApiKey header="x-api-key"'} if status == 401 else None
    return _respond(status, code.name, exc.details() or code.name, headers)


def install(app: FastAPI) -> None:
    """Registers the handlers that turn every kind of failure into a JSON error response."""

    @app.exception_handler(grpc.aio.AioRpcError)
    async def rpc_failed(request: Request, exc: grpc.aio.AioRpcError) -> JSONResponse:
        log.info("%s %s -> %s: %s", request.method, request.url.path, exc.code().name, exc.details())
        return from_rpc(exc)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {**exc.headers, **({"WWW-Authenticate": 'ApiKey header="x-api-key"'} if exc.status == 401 else {})}
        return _respond(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(VidsearchError)
    async def domain_error(request: Request, exc: VidsearchError) -> JSONResponse:
        code = status_for(exc)
        return _respond(HTTP_STATUS[code], code.name, str(exc) or code.name)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "path", "body"))
            parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg", "invalid")))
        return _respond(400, "INVALID_ARGUMENT", "; ".join(parts) or "invalid request")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return _respond(exc.status_code, _CODE_NAME.get(exc.status_code, "ERROR"), str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        ref = uuid.uuid4().hex[:12]
        log.exception("unhandled error in %s %s (ref %s)", request.method, request.url.path, ref)
        return _respond(500, "INTERNAL", f"internal error (ref {ref})")
