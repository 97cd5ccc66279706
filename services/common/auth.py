"""API keys: who may call which RPC. Keys come from a file (one ``<key> <role>`` per line).

Clients send ``x-api-key: <key>`` (or ``authorization: Bearer <key>``). Roles are ordered:
``read`` may search; ``write`` may also ingest and delete. Health and reflection stay open so
probes and tools work. A missing or unknown key is UNAUTHENTICATED; a key whose role is too
low is PERMISSION_DENIED.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import grpc

ROLES = ("read", "write")
OPEN_PREFIXES = ("/grpc.health.v1.", "/grpc.reflection.")
# RPCs that change stored data; every other RPC needs only "read".
WRITE_METHODS = frozenset({
    "/vidsearch.ingest.v1.IngestService/SubmitVideo",
    "/vidsearch.ingest.v1.IngestService/UploadVideo",
    "/vidsearch.ingest.v1.IngestService/CancelJob",
    "/vidsearch.ingest.v1.IngestService/DeleteVideo",
})


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def load_api_keys(path: Path) -> dict[bytes, str]:
    """Reads ``<key> <role>`` lines (``#`` comments allowed); returns key digests to roles."""
    keys: dict[bytes, str] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2 or parts[1] not in ROLES or len(parts[0]) < 16:
            raise ValueError(f"{path}:{n}: expected '<key of 16+ characters> <{'|'.join(ROLES)}>'")
        keys[_digest(parts[0])] = parts[1]
    if not keys:
        raise ValueError(f"{path}: no API keys")
    return keys


def supplied_key(metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
    """The key a caller sent, from ``x-api-key`` or ``authorization: Bearer`` (last one wins)."""
    supplied = None
    for key, value in metadata or ():
        if isinstance(value, bytes):  # a binary (``-bin``) header: never a key
            continue
        if key.lower() == "x-api-key":
            supplied = value
        elif key.lower() == "authorization" and value.lower().startswith("bearer "):
            supplied = value[7:].strip()
    return supplied or None


def role_of(keys: dict[bytes, str], supplied: str | None) -> str | None:
    """The role of a supplied key, compared in constant time; None when unknown or missing."""
    if not supplied:
        return None
    digest = _digest(supplied)
    for known, role in keys.items():
        if hmac.compare_digest(known, digest):
            return role
    return None


def _denied(code: grpc.StatusCode, message: str,
            handler: grpc.RpcMethodHandler[Any, Any]) -> grpc.RpcMethodHandler[Any, Any]:
    async def abort_unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        await context.abort(code, message)

    async def abort_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[None]:
        await context.abort(code, message)
        yield  # pragma: no cover - makes this an async generator

    kw = {"request_deserializer": handler.request_deserializer, "response_serializer": handler.response_serializer}
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(abort_unary, **kw)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(abort_unary, **kw)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(abort_stream, **kw)
    return grpc.stream_stream_rpc_method_handler(abort_stream, **kw)


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):
    """Checks the caller's API key against the role the method needs."""

    def __init__(self, keys: dict[bytes, str]) -> None:
        self._keys = keys

    def _role(self, metadata: Iterable[tuple[str, str | bytes]] | None) -> str | None:
        return role_of(self._keys, supplied_key(metadata))

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or method.startswith(OPEN_PREFIXES):
            return handler
        role = self._role(handler_call_details.invocation_metadata)
        if role is None:
            return _denied(grpc.StatusCode.UNAUTHENTICATED, "missing or unknown API key (send x-api-key)", handler)
        if method in WRITE_METHODS and role != "write":
            return _denied(grpc.StatusCode.PERMISSION_DENIED, f"a {role} key may not call {method}", handler)
        return handler
