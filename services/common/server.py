"""The gRPC server runner every service uses: options, health, reflection, metrics, shutdown.

``serve`` binds the port first (health NOT_SERVING), runs the service's start-up (open the
index, load and warm the model), only then reports SERVING, and on SIGTERM/SIGINT reports
NOT_SERVING before stopping with a grace period so in-flight calls finish.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from services.common.atomic import write_atomic
from services.common.interceptors import StatusInterceptor
from services.common.settings import ServerSettings

log = logging.getLogger(__name__)


def server_options(settings: ServerSettings) -> list[tuple[str, Any]]:
    """Explicit message limits and keepalive, so behaviour never depends on library defaults."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.keepalive_time_ms", settings.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", settings.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
        ("grpc.http2.max_pings_without_data", 0),
        # Clients re-resolve DNS only when a connection closes: ageing connections out lets
        # round-robin clients find replicas added by an autoscaler. The grace lets calls finish.
        ("grpc.max_connection_age_ms", settings.max_connection_age_ms),
        ("grpc.max_connection_age_grace_ms", int(settings.grace_seconds * 1000)),
    ]


def _credentials(settings: ServerSettings) -> grpc.ServerCredentials | None:
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return None
    key = Path(settings.tls_key_file).read_bytes()
    cert = Path(settings.tls_cert_file).read_bytes()
    ca = Path(settings.tls_client_ca_file).read_bytes() if settings.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=ca is not None
    )


@dataclass
class Registration:
    """One servicer to host: the generated ``add_..._to_server`` function and the full service name."""

    add_to_server: Callable[[Any, grpc.aio.Server], None]
    servicer: Any
    service_name: str


@dataclass
class ServiceHooks:
    """What a service does around serving: become ready (may be slow), and release resources."""

    start: Callable[[], Awaitable[None]] | None = None
    stop: Callable[[], Awaitable[None]] | None = None
    extra_interceptors: Sequence[grpc.aio.ServerInterceptor] = field(default_factory=tuple)


class RunningServer:
    """A started server: its bound port, health servicer and the event that stops it."""

    def __init__(self, server: grpc.aio.Server, port: int, health_servicer: health.aio.HealthServicer,
                 names: Sequence[str]) -> None:
        self.server = server
        self.port = port
        self.health = health_servicer
        self.names = list(names)
        self.stopping = asyncio.Event()

    async def set_serving(self, serving: bool) -> None:
        response = health_pb2.HealthCheckResponse
        status = response.SERVING if serving else response.NOT_SERVING
        for name in ["", *self.names]:
            await self.health.set(name, status)


async def start_server(settings: ServerSettings, registrations: Sequence[Registration],
                       interceptors: Sequence[grpc.aio.ServerInterceptor] = ()) -> RunningServer:
    """Builds, binds and starts the server with health NOT_SERVING; returns the bound port."""
    server = grpc.aio.server(
        interceptors=[StatusInterceptor(), *interceptors],
        options=server_options(settings),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for reg in registrations:
        reg.add_to_server(reg.servicer, server)
    names = [reg.service_name for reg in registrations]
    reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
    address = f"{settings.host}:{settings.port}"
    creds = _credentials(settings)
    port = server.add_secure_port(address, creds) if creds else server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"could not bind {address}")
    running = RunningServer(server, port, health_servicer, names)
    await running.set_serving(False)
    await server.start()
    if settings.port_file is not None:
        write_atomic(settings.port_file, str(port))
    log.info("listening on %s:%d (tls=%s)", settings.host, port, creds is not None)
    return running


async def serve(settings: ServerSettings, registrations: Sequence[Registration], hooks: ServiceHooks) -> None:
    """Runs a service until SIGTERM/SIGINT, reporting SERVING only once ``hooks.start`` is done."""
    if settings.metrics_port:
        start_http_server(settings.metrics_port, addr=settings.host)
        log.info("metrics on %s:%d/metrics", settings.host, settings.metrics_port)
    running = await start_server(settings, registrations, hooks.extra_interceptors)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, running.stopping.set)
    try:
        if hooks.start is not None:
            starting = asyncio.ensure_future(hooks.start())
            stop_wait = asyncio.ensure_future(running.stopping.wait())
            await asyncio.wait({starting, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
            stop_wait.cancel()
            if not starting.done():
                starting.cancel()
            else:
                starting.result()  # start-up errors end the process with a clear log
        if not running.stopping.is_set():
            await running.set_serving(True)
            log.info("serving %s", ", ".join(running.names))
            await running.stopping.wait()
    finally:
        log.info("shutting down: NOT_SERVING, then stopping with %.1fs grace", settings.grace_seconds)
        await running.health.enter_graceful_shutdown()
        await running.server.stop(settings.grace_seconds)
        if hooks.stop is not None:
            await hooks.stop()
        log.info("stopped")


def client_options(max_message_bytes: int = 64 * 1024 * 1024) -> list[tuple[str, Any]]:
    """Channel options matching the servers': message limits, keepalive and reconnect backoff.

    The reconnect backoff is capped at 2 s (gRPC's default cap is 120 s), so a peer that was down
    for a while is used again within about 2 s of listening, not up to minutes later.
    """
    return [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", 2_000),
    ]
