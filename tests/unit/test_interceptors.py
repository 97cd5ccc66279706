"""The status interceptor on a real in-process gRPC server: domain errors to codes, metrics, rich details."""

from __future__ import annotations

import asyncio
import logging
import re

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from prometheus_client import REGISTRY

from services.common import errors
from services.common.interceptors import STATUS_BY_ERROR, StatusInterceptor
from tests.unit.loopback import KINDS, invoke, loopback, method_handler
from vidsearch.common.v1 import common_pb2

Message = common_pb2.ClipRecord
SERVICE = "test.interceptors.v1.Probe"
REQUEST = Message(clip_id="vid:000000000", caption="probe")


def _method(kind: str) -> str:
    return f"/{SERVICE}/{kind}"


def _raising(exc: BaseException):
    async def behaviour(request):
        raise exc

    return behaviour


async def _echo(request):
    return request


def _call(kind: str, behaviour, request=REQUEST) -> list:
    """Serves ``behaviour`` as ``kind`` behind the interceptor and calls it once."""

    async def main():
        handlers = {_method(kind): method_handler(kind, behaviour, Message)}
        async with loopback(handlers, [StatusInterceptor()]) as channel:
            return await invoke(channel, kind, _method(kind), request, Message)

    return asyncio.run(main())


def _failure(kind: str, behaviour, request=REQUEST) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        _call(kind, behaviour, request)
    return err.value


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# Written out here, not read from STATUS_BY_ERROR, so that a changed mapping fails a test.
EXPECTED_CODES = {
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.WrongState: grpc.StatusCode.FAILED_PRECONDITION,
    errors.Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.StorageFull: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.NotReady: grpc.StatusCode.UNAVAILABLE,  # still starting: retryable, not FAILED_PRECONDITION
    errors.DependencyDown: grpc.StatusCode.UNAVAILABLE,
    errors.Cancelled: grpc.StatusCode.CANCELLED,
    errors.Unsupported: grpc.StatusCode.UNIMPLEMENTED,  # an older server without the call
}


def test_every_mapped_error_is_tested_here() -> None:
    assert {error for error, _ in STATUS_BY_ERROR} == set(EXPECTED_CODES)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("error", "code"), EXPECTED_CODES.items(), ids=[e.__name__ for e in EXPECTED_CODES])
def test_each_domain_error_becomes_its_status_code_with_its_message(error, code, kind) -> None:
    failure = _failure(kind, _raising(error(f"the {error.__name__} message")))
    assert failure.code() == code
    assert failure.details() == f"the {error.__name__} message"


def test_an_error_without_a_message_says_its_code() -> None:
    failure = _failure("unary_unary", _raising(errors.NotFound()))
    assert (failure.code(), failure.details()) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")


@pytest.mark.parametrize("kind", KINDS)
def test_an_unexpected_exception_is_internal_with_a_reference_and_no_leak(kind, caplog) -> None:
    with caplog.at_level(logging.ERROR, logger="services.common.interceptors"):
        failure = _failure(kind, _raising(RuntimeError("password=hunter2 at db.internal:5432")))
    assert failure.code() == grpc.StatusCode.INTERNAL
    match = re.fullmatch(r"internal error \(ref ([0-9a-f]{12})\)", failure.details())
    assert match, failure.details()
    assert "hunter2" not in str(failure.trailing_metadata())
    # The detail goes to the log, under the reference the caller was given.
    logged = [r for r in caplog.records if match.group(1) in r.getMessage()]
    assert logged and "hunter2" in str(logged[0].exc_info[1])


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("raw", [b"\x0a\x02\xff\xfe", b"\x0a\x05ab"], ids=["non-utf8-string", "truncated"])
def test_a_malformed_request_is_invalid_argument_and_never_reaches_the_handler(kind, raw) -> None:
    calls: list[object] = []

    async def behaviour(request):
        calls.append(request)
        return request

    async def main():
        handlers = {_method(kind): method_handler(kind, behaviour, Message)}
        async with loopback(handlers, [StatusInterceptor()]) as channel:
            # No serializer: the raw bytes go on the wire as they are.
            rpc = getattr(channel, kind)(_method(kind), response_deserializer=Message.FromString)
            call = rpc(iter([raw]) if kind.startswith("stream") else raw, timeout=5)
            if kind.endswith("_stream"):
                return [r async for r in call]
            return await call

    with pytest.raises(grpc.aio.AioRpcError) as err:
        asyncio.run(main())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("malformed request message")
    assert calls == []


@pytest.mark.parametrize("kind", KINDS)
def test_a_reason_travels_as_an_error_info_detail(kind) -> None:
    failure = _failure(kind, _raising(errors.NotFound("no such clip", reason="ERROR_REASON_CLIP_NOT_FOUND")))
    assert failure.code() == grpc.StatusCode.NOT_FOUND
    status = rpc_status.from_call(failure)
    assert status is not None and status.message == "no such clip"
    assert len(status.details) == 1
    info = error_details_pb2.ErrorInfo()
    assert status.details[0].Unpack(info)
    assert (info.reason, info.domain) == ("ERROR_REASON_CLIP_NOT_FOUND", errors.ERROR_DOMAIN)


def test_an_error_without_a_reason_has_no_rich_status() -> None:
    failure = _failure("unary_unary", _raising(errors.NotFound("no such clip")))
    assert rpc_status.from_call(failure) is None


@pytest.mark.parametrize("kind", KINDS)
def test_ok_calls_pass_through_and_are_counted_as_ok(kind) -> None:
    method = _method(kind)
    before = (_sample("vidsearch_rpc_requests_total", method=method, code="OK"),
              _sample("vidsearch_rpc_latency_seconds_count", method=method),
              _sample("vidsearch_rpc_errors_total", method=method, code="OK"))
    responses = _call(kind, _echo)
    assert responses[-1] == REQUEST
    assert len(responses) == (2 if kind.endswith("_stream") else 1)
    assert _sample("vidsearch_rpc_requests_total", method=method, code="OK") == before[0] + 1
    assert _sample("vidsearch_rpc_latency_seconds_count", method=method) == before[1] + 1
    assert _sample("vidsearch_rpc_errors_total", method=method, code="OK") == before[2]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(("exc", "code"), [
    (errors.Overloaded("queue full"), "RESOURCE_EXHAUSTED"),
    (errors.DependencyDown("index down"), "UNAVAILABLE"),
    (KeyError("boom"), "INTERNAL"),
], ids=["overloaded", "dependency-down", "unexpected"])
def test_failures_are_counted_by_method_and_code(kind, exc, code) -> None:
    method = _method(kind)
    before = (_sample("vidsearch_rpc_requests_total", method=method, code=code),
              _sample("vidsearch_rpc_errors_total", method=method, code=code),
              _sample("vidsearch_rpc_requests_total", method=method, code="OK"))
    assert _failure(kind, _raising(exc)).code().name == code
    assert _sample("vidsearch_rpc_requests_total", method=method, code=code) == before[0] + 1
    assert _sample("vidsearch_rpc_errors_total", method=method, code=code) == before[1] + 1
    assert _sample("vidsearch_rpc_requests_total", method=method, code="OK") == before[2]


def test_a_handler_that_aborts_itself_keeps_its_code_and_is_counted_with_it() -> None:
    method = _method("unary_unary")

    async def aborting(request, context):
        await context.abort(grpc.StatusCode.ALREADY_EXISTS, "already there")

    async def main():
        handler = grpc.unary_unary_rpc_method_handler(
            aborting, request_deserializer=Message.FromString, response_serializer=Message.SerializeToString)
        async with loopback({method: handler}, [StatusInterceptor()]) as channel:
            return await invoke(channel, "unary_unary", method, REQUEST, Message)

    before = _sample("vidsearch_rpc_errors_total", method=method, code="ALREADY_EXISTS")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        asyncio.run(main())
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.ALREADY_EXISTS, "already there")
    assert _sample("vidsearch_rpc_errors_total", method=method, code="ALREADY_EXISTS") == before + 1
