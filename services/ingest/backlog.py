"""Ingest backlog gauges, polled from Redis by the ingest API process: what the worker
Deployment is scaled and alerted on (jobs waiting, jobs running, how old the oldest waiting one is)."""

from __future__ import annotations

import asyncio
import logging

import redis.exceptions
from prometheus_client import Gauge

from services.ingest.jobs import JobQueue

log = logging.getLogger(__name__)

JOBS_QUEUED = Gauge("vidsearch_ingest_jobs_queued", "Jobs waiting for a worker (stream lag plus retry backoff).")
JOBS_RUNNING = Gauge("vidsearch_ingest_jobs_running", "Jobs a worker has read and not yet acknowledged.")
JOBS_DELAYED = Gauge("vidsearch_ingest_jobs_delayed", "Jobs waiting out a retry backoff.")
STREAM_LAG = Gauge("vidsearch_ingest_stream_lag_entries", "Stream entries the worker group has not read yet.")
STREAM_LAG_SECONDS = Gauge("vidsearch_ingest_stream_lag_seconds",
                           "Age of the oldest job no worker has read yet (0 when none waits).")

#: Seconds between polls; Prometheus scrapes every 15-30 s, so this is always fresh enough.
POLL_S = 5.0


async def update_once(queue: JobQueue) -> None:
    backlog = await queue.backlog()
    STREAM_LAG.set(backlog.lag_entries)
    STREAM_LAG_SECONDS.set(backlog.oldest_waiting_s)
    JOBS_RUNNING.set(backlog.running)
    JOBS_DELAYED.set(backlog.delayed)
    JOBS_QUEUED.set(backlog.lag_entries + backlog.delayed)


async def poll(queue: JobQueue, period_s: float = POLL_S) -> None:
    """Updates the gauges every ``period_s`` until cancelled; a Redis outage only skips polls."""
    while True:
        try:
            await update_once(queue)
        except (redis.exceptions.RedisError, OSError) as exc:
            log.warning("could not read the ingest backlog: %s", exc)
        await asyncio.sleep(period_s)
