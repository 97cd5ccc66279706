"""The ingest API's core: videos in as jobs (from a path or an upload), jobs followed and cancelled,
videos deleted. Knows nothing of gRPC; the servicer validates requests and translates results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator

import redis.exceptions
from prometheus_client import Counter

from services.common.clip_ids import thumbnails_prefix, uploads_prefix
from services.common.errors import DependencyDown, InvalidInput
from services.common.generations import GenerationPool
from services.ingest import sources
from services.ingest.jobs import JobEvents, JobQueue
from services.ingest.records import Job, JobSpec, SegmentSpec, VideoMeta
from services.ingest.settings import IngestSettings
from services.media.store import MediaStore

log = logging.getLogger(__name__)

UPLOAD_BYTES = Counter("vidsearch_ingest_upload_bytes_total", "Bytes received by UploadVideo and stored.")


@contextlib.contextmanager
def redis_errors() -> Iterator[None]:
    """Redis down or slow is a dependency failure (UNAVAILABLE), not an internal error."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise DependencyDown(f"job queue (redis) unavailable: {exc}") from exc


class IngestCore:
    """What the ingest API does, over the job queue, the media store and the index shards."""

    def __init__(self, cfg: IngestSettings, queue: JobQueue, media: MediaStore, generations: GenerationPool,
                 events: JobEvents | None = None) -> None:
        self.cfg = cfg
        self.queue = queue
        self.media = media
        self.generations = generations
        self.events = events

    async def _enqueue(self, spec: JobSpec) -> Job:
        with redis_errors():
            return await self.queue.submit(spec)

    async def submit(self, uri: str, video_id: str, meta: VideoMeta, segment: SegmentSpec) -> Job:
        """A job for a file the service can read (under an allowed root); the video id defaults to its hash."""
        path = await asyncio.to_thread(sources.resolve_submitted, uri, self.cfg.allowed_roots)
        if not video_id:
            video_id = sources.video_id_from_digest(await asyncio.to_thread(sources.digest_file, path))
        return await self._enqueue(JobSpec(video_id, sources.file_source(path), meta, segment))

    async def upload(self, chunks: AsyncIterator[bytes], *, video_id: str, filename: str, size_bytes: int,
                     meta: VideoMeta, segment: SegmentSpec) -> tuple[Job, int]:
        """Stores an uploaded video in the media store, then queues its job; returns it and the bytes stored."""
        limit = self.cfg.max_upload_bytes
        if size_bytes > limit:
            raise InvalidInput(f"upload of {size_bytes} bytes is larger than the limit of {limit} bytes")
        upload = await asyncio.to_thread(sources.UploadFile, self.media, limit, sources.upload_extension(filename))
        try:
            async for chunk in chunks:
                await asyncio.to_thread(upload.write, chunk)
            if upload.size == 0:
                raise InvalidInput("upload is empty (0 bytes)")
            video_id = video_id or sources.video_id_from_digest(upload.digest)
            key = await asyncio.to_thread(upload.commit, video_id)
        except BaseException:
            await asyncio.to_thread(upload.discard)
            raise
        UPLOAD_BYTES.inc(upload.size)
        return await self._enqueue(JobSpec(video_id, sources.media_source(key), meta, segment)), upload.size

    async def get(self, job_id: str) -> Job:
        with redis_errors():
            return await self.queue.get(job_id)

    async def watch(self, job_id: str) -> AsyncIterator[Job]:
        with redis_errors():
            async for job in self.queue.watch(job_id, self.events):
                yield job

    async def cancel(self, job_id: str) -> Job:
        with redis_errors():
            return await self.queue.cancel(job_id)

    async def delete_video(self, video_id: str) -> int:
        """Removes every clip, thumbnail and upload of a video; returns the clips deleted.

        Fenced: the video's jobs are stopped first (``JobQueue.fence_video``), so no job still
        running for it can write a clip back after the delete returns. A job whose worker does not let
        go in time (stalled, or cut off with a write already sent) is fenced at the shards as well: the
        delete names it, and its upserts arriving later are refused there (``UpsertRequest.writer``).
        Then the clips go from every index generation in the routing (active, being built, retiring), one
        after another, oldest first: a migration that copies the video from an older generation to a
        newer one re-reads the older one after each copy, and finds the delete there before it can have
        missed it in the newer (``services.index.migrate``).
        """
        with redis_errors():
            held = await self.queue.fence_video(video_id, timeout_s=self.cfg.claim_idle_ms / 1000)
        if held:
            log.warning("deleting video %s while jobs %s are held by a worker that does not answer",
                        video_id, ", ".join(held))
        deleted = 0
        for clients in self.generations.oldest_first():
            deleted = max(deleted, await clients.shards.for_video(video_id).delete(video_ids=[video_id],
                                                                                   fence_writers=held))
        await asyncio.to_thread(self._delete_media, video_id)
        return deleted

    def _delete_media(self, video_id: str) -> None:
        self.media.delete_prefix(thumbnails_prefix(video_id))
        self.media.delete_prefix(uploads_prefix(video_id))
