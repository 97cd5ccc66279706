"""The IngestService servicer: validates requests, calls the job queue and sources, maps results."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import math
import re
from collections.abc import AsyncIterator, Iterator

import redis.exceptions
from google.protobuf.timestamp_pb2 import Timestamp
from prometheus_client import Counter

from services.common.clip_ids import thumbnails_prefix, uploads_prefix
from services.common.errors import DependencyDown, InvalidInput
from services.ingest import sources
from services.ingest.jobs import JobEvents, JobQueue
from services.ingest.pipeline import RESERVED_METADATA
from services.ingest.records import Job, JobSpec, SegmentMode, SegmentSpec, VideoMeta
from services.ingest.settings import IngestSettings
from services.ingest.worker import Runtime
from vidsearch.ingest.v1 import ingest_pb2, ingest_pb2_grpc

UPLOAD_BYTES = Counter("vidsearch_ingest_upload_bytes_total", "Bytes received by UploadVideo and stored.")

#: The proto promises chunks of at most 1 MiB, so no message ever holds a large part of a video.
MAX_CHUNK_BYTES = 1024 * 1024
MIN_WINDOW_S = 0.5
MAX_WINDOW_S = 3600.0
MAX_TAGS = 100
MAX_EXTRA = 50
MAX_TEXT = 1000
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


@contextlib.contextmanager
def _redis_errors() -> Iterator[None]:
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        raise DependencyDown(f"job queue (redis) unavailable: {exc}") from exc


def _text(name: str, value: str, limit: int = MAX_TEXT) -> str:
    if len(value) > limit:
        raise InvalidInput(f"{name} is {len(value)} characters; the limit is {limit}")
    return value


def video_meta(msg: ingest_pb2.VideoMetadata) -> VideoMeta:
    """Checks submitted metadata: an ISO air date, sane tag and key sizes, no reserved keys."""
    air_date = msg.air_date.strip()
    if air_date:
        try:
            if not _DATE.fullmatch(air_date):
                raise ValueError(air_date)
            datetime.date.fromisoformat(air_date)
        except ValueError:
            raise InvalidInput(f"air_date {msg.air_date!r} is not a date in YYYY-MM-DD form") from None
    if len(msg.tags) > MAX_TAGS:
        raise InvalidInput(f"at most {MAX_TAGS} tags, got {len(msg.tags)}")
    tags: list[str] = []
    for tag in msg.tags:
        tag = _text("a tag", tag.strip(), 200)
        if not tag:
            raise InvalidInput("tags must not be empty")
        if tag not in tags:
            tags.append(tag)
    if len(msg.extra) > MAX_EXTRA:
        raise InvalidInput(f"at most {MAX_EXTRA} extra metadata entries, got {len(msg.extra)}")
    for key, value in msg.extra.items():
        if not key or len(key) > 100:
            raise InvalidInput(f"extra metadata key {key!r} must be 1-100 characters")
        if key in RESERVED_METADATA:
            raise InvalidInput(f"extra metadata key {key!r} is reserved; use the field of that name")
        _text(f"extra metadata {key!r}", value)
    return VideoMeta(_text("title", msg.title.strip()), _text("programme", msg.programme.strip()), air_date,
                     tuple(tags), dict(msg.extra))


def segment_spec(msg: ingest_pb2.SegmentOptions, cfg: IngestSettings) -> SegmentSpec:
    """The request's segmentation with the service defaults filled in for zero values."""
    modes = {ingest_pb2.SEGMENT_MODE_UNSPECIFIED: SegmentMode.FIXED, ingest_pb2.SEGMENT_MODE_FIXED: SegmentMode.FIXED,
             ingest_pb2.SEGMENT_MODE_SHOTS: SegmentMode.SHOTS}
    if msg.mode not in modes:
        raise InvalidInput(f"unknown segment mode {msg.mode}")
    window = msg.window_seconds or cfg.window_seconds
    if not (math.isfinite(window) and MIN_WINDOW_S <= window <= MAX_WINDOW_S):
        raise InvalidInput(f"window_seconds must be in [{MIN_WINDOW_S}, {MAX_WINDOW_S}], got {msg.window_seconds}")
    overlap = msg.overlap_seconds
    if overlap == 0 and cfg.overlap_seconds < window:
        overlap = cfg.overlap_seconds
    if not (math.isfinite(overlap) and 0 <= overlap < window):
        raise InvalidInput(f"overlap_seconds must be >= 0 and below window_seconds ({window}), got {overlap}")
    mode = modes[msg.mode]
    return SegmentSpec(mode, float(window), 0.0 if mode is SegmentMode.SHOTS else float(overlap))


def _timestamp(seconds: float) -> Timestamp:
    ts = Timestamp()
    ts.FromMicroseconds(round(seconds * 1e6))  # times are stored to the microsecond
    return ts


def job_to_proto(job: Job) -> ingest_pb2.Job:
    return ingest_pb2.Job(
        job_id=job.job_id,
        video_id=job.video_id,
        state=ingest_pb2.JobState.Value(f"JOB_STATE_{job.state.value}"),
        stage=ingest_pb2.JobStage.Value(f"JOB_STAGE_{job.stage.value}"),
        clips_done=job.clips_done,
        clips_total=job.clips_total,
        error=job.error,
        attempts=job.attempts,
        uri=job.spec.source,
        created_at=_timestamp(job.created_at),
        updated_at=_timestamp(job.updated_at),
        video_seconds=job.video_seconds,
    )


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    """Serves the ingest API; the work itself happens in workers that read the queue."""

    def __init__(self, cfg: IngestSettings, runtime: Runtime, events: JobEvents | None = None) -> None:
        self.cfg = cfg
        self.rt = runtime
        self.queue: JobQueue = runtime.queue
        self.events = events

    async def _submit(self, spec: JobSpec) -> Job:
        with _redis_errors():
            return await self.queue.submit(spec)

    async def SubmitVideo(self, request, context):
        meta = video_meta(request.metadata)
        segment = segment_spec(request.segment, self.cfg)
        video_id = sources.validate_video_id(request.video_id) if request.video_id else ""
        path = await asyncio.to_thread(sources.resolve_submitted, request.uri, self.cfg.allowed_roots)
        if not video_id:
            video_id = sources.video_id_from_digest(await asyncio.to_thread(sources.digest_file, path))
        job = await self._submit(JobSpec(video_id, sources.file_source(path), meta, segment))
        return ingest_pb2.SubmitVideoResponse(job_id=job.job_id, video_id=video_id)

    async def UploadVideo(self, request_iterator, context):
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidInput("the first UploadVideo message must be a header")
        header = first.header
        meta = video_meta(header.metadata)
        segment = segment_spec(header.segment, self.cfg)
        video_id = sources.validate_video_id(header.video_id) if header.video_id else ""
        limit = self.cfg.max_upload_bytes
        if header.size_bytes > limit:
            raise InvalidInput(f"upload of {header.size_bytes} bytes is larger than the limit of {limit} bytes")
        upload = await asyncio.to_thread(
            sources.UploadFile, self.rt.media, limit, sources.upload_extension(header.filename))
        try:
            async for message in request_iterator:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidInput("only the first UploadVideo message may be a header")
                if len(message.chunk) > MAX_CHUNK_BYTES:
                    raise InvalidInput(f"chunks must be at most {MAX_CHUNK_BYTES} bytes, got {len(message.chunk)}")
                await asyncio.to_thread(upload.write, message.chunk)
            if upload.size == 0:
                raise InvalidInput("upload is empty (0 bytes)")
            video_id = video_id or sources.video_id_from_digest(upload.digest)
            key = await asyncio.to_thread(upload.commit, video_id)
        except BaseException:
            await asyncio.to_thread(upload.discard)
            raise
        UPLOAD_BYTES.inc(upload.size)
        job = await self._submit(JobSpec(video_id, sources.media_source(key), meta, segment))
        return ingest_pb2.UploadVideoResponse(job_id=job.job_id, video_id=video_id, size_bytes=upload.size)

    async def GetJob(self, request, context):
        with _redis_errors():
            return ingest_pb2.GetJobResponse(job=job_to_proto(await self.queue.get(request.job_id)))

    async def WatchJob(self, request, context) -> AsyncIterator[ingest_pb2.WatchJobResponse]:
        with _redis_errors():
            async for job in self.queue.watch(request.job_id, self.events):
                yield ingest_pb2.WatchJobResponse(job=job_to_proto(job))

    async def CancelJob(self, request, context):
        with _redis_errors():
            return ingest_pb2.CancelJobResponse(job=job_to_proto(await self.queue.cancel(request.job_id)))

    async def DeleteVideo(self, request, context):
        video_id = sources.validate_video_id(request.video_id)
        deleted = await self.rt.shards.for_video(video_id).delete(video_ids=[video_id])
        await asyncio.to_thread(self._delete_media, video_id)
        return ingest_pb2.DeleteVideoResponse(clips_deleted=deleted)

    def _delete_media(self, video_id: str) -> None:
        self.rt.media.delete_prefix(thumbnails_prefix(video_id))
        self.rt.media.delete_prefix(uploads_prefix(video_id))
