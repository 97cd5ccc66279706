"""A real grpc.aio server on a loopback port inside the test process, for interceptor and auth tests.

Handlers are built for each of the four RPC shapes from one async ``behaviour(request)`` so a
test can run the same case through unary and streaming RPCs; ``invoke`` calls any shape and
returns the responses, raising ``grpc.aio.AioRpcError`` on a non-OK status.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import grpc

KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")

Behaviour = Callable[[Any], Awaitable[Any]]


def method_handler(kind: str, behaviour: Behaviour, message: Any) -> grpc.RpcMethodHandler:
    """A handler of shape ``kind`` that answers with ``await behaviour(request)``.

    Streaming requests pass their last message to ``behaviour``; streaming responses send the
    request back first, so a failure in ``behaviour`` happens mid-stream.
    """
    kw = {"request_deserializer": message.FromString, "response_serializer": message.SerializeToString}

    async def unary_unary(request, context):
        return await behaviour(request)

    async def unary_stream(request, context):
        yield request
        yield await behaviour(request)

    async def stream_unary(requests, context):
        last = [r async for r in requests][-1]
        return await behaviour(last)

    async def stream_stream(requests, context):
        async for request in requests:
            yield request
            yield await behaviour(request)

    shapes = {"unary_unary": unary_unary, "unary_stream": unary_stream,
              "stream_unary": stream_unary, "stream_stream": stream_stream}
    return getattr(grpc, f"{kind}_rpc_method_handler")(shapes[kind], **kw)


@asynccontextmanager
async def loopback(handlers: dict[str, grpc.RpcMethodHandler],
                   interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> AsyncIterator[grpc.aio.Channel]:
    """Serves ``handlers`` (keyed by full method name, "/pkg.Service/Method"); yields a channel to them."""
    by_service: dict[str, dict[str, grpc.RpcMethodHandler]] = defaultdict(dict)
    for name, handler in handlers.items():
        service, method = name.lstrip("/").split("/")
        by_service[service][method] = handler
    server = grpc.aio.server(interceptors=list(interceptors))
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(s, m) for s, m in by_service.items()])
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield channel
    finally:
        await server.stop(None)


async def invoke(channel: grpc.aio.Channel, kind: str, method: str, request: Any, message: Any,
                 metadata: Sequence[tuple[str, str]] = (), timeout_s: float = 5.0) -> list[Any]:
    """Calls ``method`` with one request in the shape ``kind``; returns every response received."""
    callable_ = getattr(channel, kind)(method, request_serializer=message.SerializeToString,
                                       response_deserializer=message.FromString)
    arg = iter([request]) if kind.startswith("stream") else request
    call = callable_(arg, metadata=tuple(metadata), timeout=timeout_s)
    if kind.endswith("_stream"):
        return [response async for response in call]
    return [await call]
