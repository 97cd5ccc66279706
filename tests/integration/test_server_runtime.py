"""The shared server runner: readiness, error mapping, metrics and graceful shutdown, in-process."""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.request
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.readiness import Pending
from services.common.server import Registration, ServiceHooks, serve
from services.common.settings import ServerSettings
from services.index.servicer import IndexServicer
from tests.procs import free_port
from vidsearch.index.v1 import index_pb2, index_pb2_grpc


def test_health_is_serving_only_after_start_up_and_errors_map_to_status(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    metrics_port = free_port()
    settings = ServerSettings(port=0, port_file=port_file, metrics_port=metrics_port, grace_seconds=1)
    servicer = IndexServicer("shard-x", Pending("index shard-x is still opening"))
    opened = asyncio.Event()
    seen: dict[str, object] = {}

    async def start() -> None:
        await opened.wait()

    async def scenario() -> None:
        while not port_file.exists():
            await asyncio.sleep(0.01)
        address = f"127.0.0.1:{port_file.read_text()}"
        async with grpc.aio.insecure_channel(address) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            seen["before"] = (await health.Check(health_pb2.HealthCheckRequest(), timeout=5)).status
            try:
                await index_pb2_grpc.IndexServiceStub(channel).Stats(index_pb2.StatsRequest(), timeout=5)
            except grpc.aio.AioRpcError as err:
                seen["early_call"] = (err.code(), err.details())
            opened.set()
            for _ in range(100):
                status = (await health.Check(health_pb2.HealthCheckRequest(), timeout=5)).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    break
                await asyncio.sleep(0.02)
            seen["after"] = status
            named = health_pb2.HealthCheckRequest(service="vidsearch.index.v1.IndexService")
            seen["named"] = (await health.Check(named, timeout=5)).status
        seen["metrics"] = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
        )
        os.kill(os.getpid(), signal.SIGTERM)

    async def main() -> None:
        registration = Registration(
            index_pb2_grpc.add_IndexServiceServicer_to_server, servicer, "vidsearch.index.v1.IndexService"
        )
        task = asyncio.ensure_future(scenario())
        await serve(settings, [registration], ServiceHooks(start=start))
        await task

    asyncio.run(main())
    assert seen["before"] == health_pb2.HealthCheckResponse.NOT_SERVING
    assert seen["early_call"][0] == grpc.StatusCode.UNAVAILABLE  # retryable: it is only starting
    assert "still opening" in seen["early_call"][1]
    assert seen["after"] == health_pb2.HealthCheckResponse.SERVING
    assert seen["named"] == health_pb2.HealthCheckResponse.SERVING
    metrics = seen["metrics"]
    assert 'vidsearch_rpc_requests_total{code="UNAVAILABLE",method="/vidsearch.index.v1.IndexService/Stats"}' \
        in metrics
    assert "vidsearch_rpc_latency_seconds_bucket" in metrics
