"""Outbound gRPC channels: explicit limits and keepalive, retries of UNAVAILABLE, optional TLS.

Targets may be ``host:port`` or ``dns:///name:port``; with a DNS name that resolves to several
addresses (a headless Kubernetes service) the ``round_robin`` policy spreads calls over all of
them, which a plain ClusterIP service cannot do for long-lived HTTP/2 connections.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from services.common import errors
from services.common.server import client_options

ReplyT = TypeVar("ReplyT")


@dataclass(frozen=True)
class ClientTLS:
    """TLS for outbound calls: the CA to trust, a client certificate for mutual TLS, the name to verify."""

    # None trusts gRPC's default roots (GRPC_DEFAULT_SSL_ROOTS_FILE_PATH can point them at the system's).
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # The name the server's certificate must carry, when it differs from the address's host.
    server_name: str | None = None

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_file.read_bytes() if self.ca_file else None,
            private_key=self.key_file.read_bytes() if self.key_file else None,
            certificate_chain=self.cert_file.read_bytes() if self.cert_file else None,
        )

    def channel_options(self) -> list[tuple[str, str]]:
        return [("grpc.ssl_target_name_override", self.server_name)] if self.server_name else []


def retry_service_config(*services: str, max_attempts: int = 4, fail_fast: tuple[str, ...] = (),
                         health_checked: bool = True) -> str:
    """Retries UNAVAILABLE with backoff; only for services whose calls are idempotent.

    Methods named in ``fail_fast`` (``"package.Service/Method"``) are never retried: a search fanned
    out to every shard has a better answer than waiting for a dead one (the others' hits, marked
    partial), so it must fail at once, while writes keep their retries.

    Client-side health checking (the first service's name) keeps calls off a server that is up but
    not SERVING: one still loading its model or opening its index, or draining on SIGTERM. Calls
    then fail UNAVAILABLE (retried here, retryable by callers) without reaching the servicer (which
    would answer UNAVAILABLE "still loading" too), and round_robin skips such a replica. Without
    ``health_checked`` calls reach a server whatever its health says (an index replica catching up
    takes writes before it serves reads).
    """
    method_config: list[dict[str, Any]] = [{
        "name": [{"service": s} for s in services],
        "retryPolicy": {
            "maxAttempts": max_attempts,
            "initialBackoff": "0.05s",
            "maxBackoff": "1s",
            "backoffMultiplier": 2,
            "retryableStatusCodes": ["UNAVAILABLE"],
        },
    }]
    if fail_fast:
        # A name with a method is more specific than the service-wide one, so it wins: no retryPolicy.
        method_config.append({"name": [dict(zip(("service", "method"), m.split("/"), strict=True))
                                       for m in fail_fast]})
    config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}], "methodConfig": method_config}
    if health_checked:
        config["healthCheckConfig"] = {"serviceName": services[0]}
    return json.dumps(config)


def open_channel(target: str, services: tuple[str, ...], tls: ClientTLS | None = None,
                 max_message_bytes: int = 64 * 1024 * 1024, fail_fast: tuple[str, ...] = (),
                 health_checked: bool = True) -> grpc.aio.Channel:
    config = retry_service_config(*services, fail_fast=fail_fast, health_checked=health_checked)
    options = [*client_options(max_message_bytes), ("grpc.service_config", config), ("grpc.enable_retries", 1)]
    if tls is not None:
        return grpc.aio.secure_channel(target, tls.credentials(), options=[*options, *tls.channel_options()])
    return grpc.aio.insecure_channel(target, options=options)


async def call(method: Callable[..., Awaitable[ReplyT]], request: Message, timeout_s: float, what: str) -> ReplyT:
    """One outbound unary call with a deadline; a failure comes back as the matching domain error."""
    try:
        return await method(request, timeout=timeout_s)
    except grpc.aio.AioRpcError as exc:
        raise domain_error(exc, what) from None


def domain_error(exc: grpc.aio.AioRpcError, what: str) -> errors.VidsearchError:
    """Maps a failed outbound call to the domain error the caller should raise in turn."""
    code, detail = exc.code(), exc.details() or exc.code().name
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        return errors.InvalidInput(detail)
    if code == grpc.StatusCode.NOT_FOUND:
        return errors.NotFound(detail)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return errors.WrongState(f"{what}: {detail}")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return errors.Overloaded(f"{what}: {detail}")
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return errors.Unsupported(f"{what}: {detail}")
    return errors.DependencyDown(f"{what} unavailable ({code.name}): {detail}")


def error_reason(err: grpc.RpcError) -> str:
    """The ``ErrorReason`` name a failed call carries in its ``google.rpc.Status``; "" when it has none."""
    try:
        # The stubs want a grpc.Call; every failed call's RpcError is one (grpc.aio.AioRpcError included).
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
    except ValueError:  # a status detail that contradicts the call's own code: trust neither
        return ""
    for detail in status.details if status is not None else ():
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.domain == errors.ERROR_DOMAIN:
            return info.reason
    return ""
