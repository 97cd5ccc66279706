"""Ingest workers: take jobs from the queue, run the pipeline, and settle each job once.

A worker claims a delivery (counting the attempt and becoming the job's owner), renews its claim
while it works, and then, fenced by its claim token, either marks the job SUCCEEDED, fails it for
good (permanent errors at once; transient ones after ``max_attempts``, with a dead letter), or puts
it back with a backoff. A worker that dies leaves its entry pending; another one takes it over after
``claim_idle_ms`` and, since clip ids are deterministic, overwrites rather than duplicates what
the first one wrote. Cancelled and failed jobs have the clips they wrote removed again.

``python -m services.ingest.worker`` runs a standalone worker process (VIDSEARCH_INGEST_* settings;
``VIDSEARCH_INGEST_WORKERS`` worker tasks, at least one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import uuid
from dataclasses import dataclass

import redis.exceptions
from prometheus_client import Counter, start_http_server

from services.common import logs, settings
from services.common.clip_ids import ClipId
from services.common.errors import InvalidInput, NotFound, VidsearchError
from services.common.generations import GenerationPool, client_factory
from services.common.routing import Routing, RoutingStore
from services.ingest import jobs
from services.ingest.decoding import DecodePool
from services.ingest.jobs import (
    Claim,
    ClaimKind,
    Delivery,
    JobCancelled,
    JobQueue,
    Renewal,
    Superseded,
)
from services.ingest.pipeline import Outcome, Pipeline
from services.ingest.records import JobState
from services.ingest.settings import IngestSettings, load_or_exit
from services.media.store import MediaStore

log = logging.getLogger(__name__)

JOBS = Counter("vidsearch_ingest_jobs_total", "Job attempts by how they ended.", ["outcome"])

#: The video itself is bad or gone: another attempt cannot help.
PERMANENT = (InvalidInput, NotFound)
_REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


@dataclass
class Runtime:
    """Everything workers of one process share: Redis, the clients of every index generation (encoder
    and shards, following the routing document), the decode pool."""

    cfg: IngestSettings
    queue: JobQueue
    generations: GenerationPool
    media: MediaStore
    pool: DecodePool | None
    pipeline: Pipeline | None

    @classmethod
    def build(cls, cfg: IngestSettings, *, decode: bool) -> Runtime:
        """Clients for the API server (``decode=False``) or for workers (with a decode pool)."""
        client = jobs.connect(cfg.redis_url, settings.read_secret(cfg.redis_password_file))
        queue = JobQueue(client, cfg.key_prefix, ttl_s=cfg.job_ttl_seconds)
        generations = GenerationPool(
            RoutingStore(client, cfg.key_prefix), Routing.static(cfg.encoder, cfg.index_shards),
            client_factory(timeout_s=cfg.rpc_timeout_seconds, write_quorum=cfg.index_write_quorum),
            poll_interval_s=cfg.routing_poll_s, close_delay_s=cfg.rpc_timeout_seconds)
        media = MediaStore(cfg.media_root)
        pipeline = Pipeline.from_settings(cfg, generations, media) if decode else None
        return cls(cfg, queue, generations, media, pipeline.pool if pipeline else None, pipeline)

    def worker(self, index: int = 0) -> IngestWorker:
        consumer = f"{socket.gethostname()}-{os.getpid()}-{index}-{uuid.uuid4().hex[:6]}"
        return IngestWorker(self, consumer)

    async def close(self) -> None:
        await self.generations.close()
        await self.queue.redis.aclose()
        if self.pool is not None:
            await asyncio.to_thread(self.pool.close)


class IngestWorker:
    """One consumer of the job stream, processing one job at a time."""

    def __init__(self, runtime: Runtime, consumer: str) -> None:
        assert runtime.pipeline is not None, "workers need a runtime built with decode=True"
        self.rt = runtime
        self.cfg = runtime.cfg
        self.queue = runtime.queue
        self.pipeline = runtime.pipeline
        self.consumer = consumer

    async def run(self, stopping: asyncio.Event) -> None:
        """Processes jobs until ``stopping`` is set; survives Redis outages and bad jobs."""
        failures = 0
        ready = False
        next_prune = 0.0
        loop = asyncio.get_running_loop()
        log.info("worker %s started", self.consumer)
        while not stopping.is_set():
            try:
                if not ready:
                    await self.queue.ensure_group()
                    ready = True
                if loop.time() >= next_prune:
                    await self.queue.prune_consumers(max(3_600_000, 10 * self.cfg.claim_idle_ms))
                    next_prune = loop.time() + 600
                await self.queue.promote_due()
                block_ms = min(1000, self.cfg.claim_idle_ms // 2)
                retry_in = await self.queue.seconds_to_next_retry()
                if retry_in is not None:  # wake up in time to promote it
                    block_ms = min(block_ms, int(retry_in * 1000) + 1)
                delivery = await self.queue.next_delivery(self.consumer, self.cfg.claim_idle_ms, block_ms)
                failures = 0
                if delivery is not None:
                    await self.handle(delivery, stopping)
            except _REDIS_DOWN as exc:
                failures += 1
                log.warning("worker %s: redis unavailable (%s); retrying", self.consumer, exc)
                await _sleep_unless(stopping, min(30.0, 0.25 * 2**failures))
            except Exception:  # a worker outlives any one bad job or bug
                log.exception("worker %s: unexpected error; continuing", self.consumer)
                await _sleep_unless(stopping, 1.0)
        with contextlib.suppress(Exception):
            await self.queue.redis.xgroup_delconsumer(self.queue.stream, jobs.GROUP, self.consumer)
        log.info("worker %s stopped", self.consumer)

    async def handle(self, delivery: Delivery, stopping: asyncio.Event) -> None:
        if delivery.job_id is None:
            await self.queue.ack_malformed(delivery, "queue entry names no job")
            JOBS.labels("malformed").inc()
            return
        claim = await self.queue.claim(delivery, self.consumer, self.cfg.max_attempts)
        if claim.kind is ClaimKind.MISSING:
            await self.queue.ack_malformed(delivery, f"job {delivery.job_id} has no record")
            JOBS.labels("malformed").inc()
        elif claim.kind is ClaimKind.FINAL:
            note = ""
            if claim.state is JobState.CANCELLED:  # cancelled while queued or waiting to retry
                note = await self._remove_written(delivery.job_id)
            await self.queue.finish(delivery, "", claim.state or JobState.CANCELLED,
                                    dead_reason=f"cancelled{note}" if note else "")
        elif claim.kind is ClaimKind.EXHAUSTED:
            reason = f"gave up after {claim.attempts} attempts: {claim.last_error or 'no error recorded'}"
            await self._fail(delivery, "", reason)
        else:
            await self._attempt(delivery, claim, stopping)

    async def _attempt(self, delivery: Delivery, claim: Claim, stopping: asyncio.Event) -> None:
        job_id = delivery.job_id
        assert job_id is not None
        job = await self.queue.get(job_id)
        token = claim.token
        log.info("job %s (video %s) attempt %d by %s", job_id, job.video_id, claim.attempts, self.consumer)

        async def report(fields: dict[str, object], writing: list[str] | None) -> None:
            await self.queue.update(job_id, token, fields, writing)

        work = asyncio.create_task(self.pipeline.run(job, report))
        beat = asyncio.create_task(self._keep_claim(delivery, token))
        stop = asyncio.create_task(stopping.wait())
        try:
            await asyncio.wait({work, beat, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (beat, stop):
                task.cancel()
            if not work.done():
                work.cancel()
            await asyncio.gather(work, beat, stop, return_exceptions=True)
        if work.cancelled():
            renewal = beat.result() if beat.done() and not beat.cancelled() and not beat.exception() else None
            if renewal is Renewal.CANCELLED:
                await self._cancelled(delivery, token)
            elif stopping.is_set():
                await self._release(delivery, token)
            else:
                log.warning("job %s: taken over by another worker; %s stops", job_id, self.consumer)
                JOBS.labels("superseded").inc()
            return
        exc = work.exception()
        try:
            if exc is None:
                await self._succeed(delivery, token, work.result())
            else:
                await self._settle_error(delivery, claim, exc)
        except JobCancelled:
            await self._cancelled(delivery, token)
        except Superseded:
            log.warning("job %s: taken over by another worker before %s settled it", job_id, self.consumer)
            JOBS.labels("superseded").inc()

    async def _succeed(self, delivery: Delivery, token: str, outcome: Outcome) -> None:
        state = await self.queue.finish(delivery, token, JobState.SUCCEEDED)
        if state is JobState.CANCELLED:  # cancelled after the last batch was written
            note = await self._remove_written(delivery.job_id or "")
            if note:
                log.error("job %s cancelled%s", delivery.job_id, note)
            JOBS.labels("cancelled").inc()
            return
        log.info("job %s succeeded: %d clips, %.1f s of video", delivery.job_id, outcome.clips,
                 outcome.video_seconds)
        JOBS.labels("succeeded").inc()

    async def _settle_error(self, delivery: Delivery, claim: Claim, exc: BaseException) -> None:
        if isinstance(exc, JobCancelled | Superseded):
            raise exc
        if isinstance(exc, PERMANENT):
            log.warning("job %s failed for good: %s", delivery.job_id, exc)
            await self._fail(delivery, claim.token, str(exc))
            return
        reason = str(exc) if isinstance(exc, VidsearchError) else f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, VidsearchError):
            log.error("job %s: unexpected error", delivery.job_id, exc_info=exc)
        if claim.attempts >= self.cfg.max_attempts:
            await self._fail(delivery, claim.token, f"failed after {claim.attempts} attempts: {reason}")
            return
        delay = min(self.cfg.retry_max_seconds, self.cfg.retry_base_seconds * 2 ** (claim.attempts - 1))
        delay *= random.uniform(0.8, 1.2)  # spread retries of jobs that failed together
        log.warning("job %s attempt %d failed (%s); retrying in %.1fs", delivery.job_id, claim.attempts, reason,
                    delay)
        await self.queue.requeue(delivery, claim.token, delay, reason)
        JOBS.labels("retried").inc()

    async def _fail(self, delivery: Delivery, token: str, reason: str) -> None:
        note = await self._remove_written(delivery.job_id or "")
        state = await self.queue.finish(delivery, token, JobState.FAILED, reason, dead_reason=reason + note)
        JOBS.labels("failed" if state is JobState.FAILED else "cancelled").inc()

    async def _cancelled(self, delivery: Delivery, token: str) -> None:
        log.info("job %s cancelled; removing its clips", delivery.job_id)
        note = await self._remove_written(delivery.job_id or "")
        await self.queue.finish(delivery, token, JobState.CANCELLED, dead_reason=f"cancelled{note}" if note else "")
        JOBS.labels("cancelled").inc()

    async def _release(self, delivery: Delivery, token: str) -> None:
        """Hands a job back to the queue at once when this worker shuts down (not the job's fault)."""
        with contextlib.suppress(Superseded, JobCancelled, *_REDIS_DOWN):
            await self.queue.requeue(delivery, token, 0.0, "worker shut down", count_attempt=False)
            log.info("job %s released by %s on shutdown", delivery.job_id, self.consumer)

    async def _keep_claim(self, delivery: Delivery, token: str) -> Renewal:
        """Renews the claim every third of the idle timeout; returns once the job is cancelled or lost.

        This also catches a cancellation while the pipeline is still planning or decoding, before
        it writes (and checks) its first batch.
        """
        while True:
            # At least every second: a DeleteVideo of the job's video waits for this worker to stop.
            await asyncio.sleep(min(self.cfg.claim_idle_ms / 3000, 1.0))
            try:
                renewal = await self.queue.heartbeat(delivery, token, self.consumer)
            except _REDIS_DOWN as exc:
                log.warning("job %s: claim not renewed (%s)", delivery.job_id, exc)
                continue
            if renewal is not Renewal.RENEWED:
                return renewal

    async def _remove_written(self, job_id: str) -> str:
        """Deletes the clips (and thumbnails) a job wrote; returns a note if some could not be removed.

        From every generation in the routing: the job wrote to the one active when it started.
        """
        clip_ids = await self.queue.written_clips(job_id)
        if not clip_ids:
            return ""
        video_id = (await self.queue.get(job_id)).video_id
        try:
            for clients in self.rt.generations.oldest_first():
                shard = clients.shards.for_video(video_id)
                for i in range(0, len(clip_ids), 1000):
                    await shard.delete(clip_ids=clip_ids[i:i + 1000])
            await asyncio.to_thread(self._remove_thumbnails, video_id, clip_ids)
        except VidsearchError as exc:
            log.warning("job %s: could not remove its %d clips: %s", job_id, len(clip_ids), exc)
            return f" ({len(clip_ids)} clips written before it stopped could not be removed: {exc})"
        await self.queue.forget_written(job_id)
        log.info("job %s: removed %d clips it had written", job_id, len(clip_ids))
        return ""

    def _remove_thumbnails(self, video_id: str, clip_ids: list[str]) -> None:
        for clip_id in clip_ids:
            self.rt.media.delete_prefix(ClipId.parse(clip_id).thumbnail_key)


async def _sleep_unless(event: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), seconds)


async def run_workers(cfg: IngestSettings) -> None:
    runtime = Runtime.build(cfg, decode=True)
    await runtime.generations.start()
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await asyncio.gather(*(runtime.worker(i).run(stopping) for i in range(max(1, cfg.workers))))
    finally:
        await runtime.close()


def main() -> None:
    logs.configure("ingest-worker")
    cfg = load_or_exit()
    if cfg.server.metrics_port:
        start_http_server(cfg.server.metrics_port, addr=cfg.server.host)
    asyncio.run(run_workers(cfg))


if __name__ == "__main__":
    main()
