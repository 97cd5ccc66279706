"""The one server interceptor: maps domain errors to gRPC status codes and records RPC metrics.

Servicers raise the exceptions of ``services.common.errors``; nothing else in a service turns
an exception into a status. Unexpected exceptions become INTERNAL with a generic message and
a reference id, and the detail goes to the log.

Requests are parsed here too, not by grpc: when its own deserializer fails (bad wire format, a
string field that is not UTF-8), grpc.aio answers UNKNOWN "Unexpected <class 'DecodeError'>" and
logs a traceback before any interceptor runs. Parsed here, such a request is INVALID_ARGUMENT,
logged and counted like any other bad input.
"""

from __future__ import annotations

import inspect
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from prometheus_client import Counter, Histogram

from services.common import errors

log = logging.getLogger(__name__)

STATUS_BY_ERROR: tuple[tuple[type[errors.VidsearchError], grpc.StatusCode], ...] = (
    (errors.InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.WrongState, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.StorageFull, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.NotReady, grpc.StatusCode.UNAVAILABLE),
    (errors.DependencyDown, grpc.StatusCode.UNAVAILABLE),
    (errors.Cancelled, grpc.StatusCode.CANCELLED),
    (errors.Unsupported, grpc.StatusCode.UNIMPLEMENTED),
)

RPC_REQUESTS = Counter(
    "vidsearch_rpc_requests_total", "RPCs handled, by method and final status code.", ["method", "code"]
)
RPC_LATENCY = Histogram(
    "vidsearch_rpc_latency_seconds",
    "Handling time of RPCs, by method.",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
RPC_ERRORS = Counter(
    "vidsearch_rpc_errors_total", "RPCs that ended with a non-OK status.", ["method", "code"]
)


def status_for(exc: BaseException) -> grpc.StatusCode:
    """The status code a domain error maps to; INTERNAL for anything unexpected."""
    for kind, code in STATUS_BY_ERROR:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


class _Outcome:
    """Tracks the status an RPC ended with, for metrics."""

    def __init__(self, method: str) -> None:
        self.method = method
        self.code = grpc.StatusCode.OK
        self.started = time.perf_counter()

    def finish(self) -> None:
        RPC_LATENCY.labels(self.method).observe(time.perf_counter() - self.started)
        RPC_REQUESTS.labels(self.method, self.code.name).inc()
        if self.code is not grpc.StatusCode.OK:
            RPC_ERRORS.labels(self.method, self.code.name).inc()


async def _abort(outcome: _Outcome, exc: BaseException, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    code = status_for(exc)
    outcome.code = code
    if code is grpc.StatusCode.INTERNAL:
        ref = uuid.uuid4().hex[:12]
        log.exception("unhandled error in %s (ref %s)", outcome.method, ref)
        await context.abort(code, f"internal error (ref {ref})")
    log.info("%s -> %s: %s", outcome.method, code.name, exc)
    message = str(exc) or code.name
    reason = getattr(exc, "reason", "")
    if not reason:
        await context.abort(code, message)
    status = rich_status(code, message, reason)
    await context.abort(status.code, status.details, status.trailing_metadata)


def rich_status(code: grpc.StatusCode, message: str, reason: str) -> grpc.Status:
    """A status whose ``google.rpc.Status`` carries an ErrorInfo detail naming ``reason``."""
    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=errors.ERROR_DOMAIN))
    return rpc_status.to_status(status_pb2.Status(code=code.value[0], message=message, details=[detail]))


def _code_of(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.UNKNOWN if code else grpc.StatusCode.OK


def _parser(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    """Parses one request message; a malformed one is the caller's error, not an unexpected one."""
    if deserializer is None:
        return lambda raw: raw

    def parse(raw: bytes) -> Any:
        try:
            return deserializer(raw)
        except DecodeError as exc:
            raise errors.InvalidInput(f"malformed request message: {exc}") from None

    return parse


def _parse_each(parse: Callable[[bytes], Any]) -> Callable[[Any], Any]:
    async def messages(raw_iterator: Any) -> Any:
        async for raw in raw_iterator:
            yield parse(raw)

    return messages


def _wrap_unary(behaviour: Callable[..., Any], method: str, parse: Callable[[Any], Any]) -> Callable[..., Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        outcome = _Outcome(method)
        try:
            response = await behaviour(parse(request), context)
            outcome.code = _code_of(context)
            return response
        except grpc.aio.AbortError:
            outcome.code = _code_of(context)
            raise
        except Exception as exc:  # noqa: BLE001 - the one place errors become statuses
            await _abort(outcome, exc, context)
        finally:
            outcome.finish()

    return handler


def _wrap_stream(behaviour: Callable[..., Any], method: str, parse: Callable[[Any], Any]) -> Callable[..., Any]:
    async def handler(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        outcome = _Outcome(method)
        try:
            async for response in behaviour(parse(request), context):
                yield response
            outcome.code = _code_of(context)
        except grpc.aio.AbortError:
            outcome.code = _code_of(context)
            raise
        except Exception as exc:  # noqa: BLE001 - the one place errors become statuses
            await _abort(outcome, exc, context)
        finally:
            outcome.finish()

    return handler


class StatusInterceptor(grpc.aio.ServerInterceptor):
    """Wraps every handler so domain errors become status codes and each RPC is measured."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        # The wrapped handlers get raw bytes (no request_deserializer) and parse them themselves.
        parse = _parser(handler.request_deserializer)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(handler.unary_unary, method, parse),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                _wrap_unary(handler.stream_unary, method, _parse_each(parse)),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream and inspect.isasyncgenfunction(handler.unary_stream):
            return grpc.unary_stream_rpc_method_handler(
                _wrap_stream(handler.unary_stream, method, parse),
                response_serializer=handler.response_serializer,
            )
        if handler.stream_stream and inspect.isasyncgenfunction(handler.stream_stream):
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream(handler.stream_stream, method, _parse_each(parse)),
                response_serializer=handler.response_serializer,
            )
        return handler
