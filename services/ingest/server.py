"""Ingest API process: the IngestService, and optionally worker tasks in the same process.

Health turns SERVING once Redis answers (the encoder and index addresses are checked when the
settings load); with ``VIDSEARCH_INGEST_WORKERS`` > 0 the workers start at the same moment and,
on shutdown, hand their running jobs back to the queue.
"""

from __future__ import annotations

import asyncio
import logging

import redis.exceptions

from services.common import logs
from services.common.auth import ApiKeyInterceptor, load_api_keys
from services.common.retry import until_ready
from services.common.server import Registration, ServiceHooks, serve
from services.ingest import backlog
from services.ingest.core import IngestCore
from services.ingest.jobs import JobEvents, JobQueue
from services.ingest.servicer import IngestServicer
from services.ingest.settings import IngestSettings, load_or_exit
from services.ingest.worker import Runtime
from vidsearch.ingest.v1 import ingest_pb2, ingest_pb2_grpc

log = logging.getLogger(__name__)


async def wait_for_redis(queue: JobQueue) -> None:
    """Returns once Redis answers and the consumer group exists; retries with backoff until then."""

    async def ready() -> None:
        await queue.ping()
        await queue.ensure_group()

    await until_ready(ready, what="redis",
                      retry_on=(redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError))


async def run(cfg: IngestSettings) -> None:
    runtime = Runtime.build(cfg, decode=cfg.workers > 0)
    events = JobEvents(runtime.queue.redis, runtime.queue.events)
    core = IngestCore(cfg, runtime.queue, runtime.media, runtime.generations, events)
    servicer = IngestServicer(cfg, core)
    stopping = asyncio.Event()
    tasks: list[asyncio.Task] = []

    async def start() -> None:
        await wait_for_redis(runtime.queue)
        routing = await runtime.generations.start()
        tasks.append(asyncio.create_task(events.run(), name="job-events"))
        tasks.append(asyncio.create_task(backlog.poll(runtime.queue), name="backlog-metrics"))
        tasks.extend(asyncio.create_task(runtime.worker(i).run(stopping), name=f"worker-{i}")
                     for i in range(cfg.workers))
        log.info("redis ready; generation %s; %d in-process workers", routing.active, cfg.workers)

    async def stop() -> None:
        stopping.set()
        workers = tasks[2:]
        if workers:
            _, late = await asyncio.wait(workers, timeout=cfg.server.grace_seconds)
            for task in late:
                task.cancel()
        for task in tasks[:2]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await runtime.close()

    registration = Registration(
        ingest_pb2_grpc.add_IngestServiceServicer_to_server,
        servicer,
        ingest_pb2.DESCRIPTOR.services_by_name["IngestService"].full_name,
    )
    interceptors = [ApiKeyInterceptor(load_api_keys(cfg.api_keys_file))] if cfg.api_keys_file else []
    await serve(cfg.server, [registration], ServiceHooks(start=start, stop=stop, extra_interceptors=interceptors))


def main() -> None:
    logs.configure("ingest")
    asyncio.run(run(load_or_exit()))
