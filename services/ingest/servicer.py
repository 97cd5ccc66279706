"""The IngestService servicer: checks requests (metadata, segmentation, upload framing), calls the core."""

from __future__ import annotations

import datetime
import math
import re
from collections.abc import AsyncIterator

from google.protobuf.timestamp_pb2 import Timestamp

from services.common.errors import InvalidInput
from services.ingest import sources
from services.ingest.core import IngestCore
from services.ingest.pipeline import RESERVED_METADATA
from services.ingest.records import Job, SegmentMode, SegmentSpec, VideoMeta
from services.ingest.settings import IngestSettings
from vidsearch.ingest.v1 import ingest_pb2, ingest_pb2_grpc

#: The proto promises chunks of at most 1 MiB, so no message ever holds a large part of a video.
MAX_CHUNK_BYTES = 1024 * 1024
MIN_WINDOW_S = 0.5
MAX_WINDOW_S = 3600.0
MAX_TAGS = 100
MAX_EXTRA = 50
MAX_TEXT = 1000
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


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
    """Serves the ingest API: checks each request's shape, calls the core, maps the result."""

    def __init__(self, cfg: IngestSettings, core: IngestCore) -> None:
        self.cfg = cfg
        self.core = core

    async def SubmitVideo(self, request, context):
        meta = video_meta(request.metadata)
        segment = segment_spec(request.segment, self.cfg)
        video_id = sources.validate_video_id(request.video_id) if request.video_id else ""
        job = await self.core.submit(request.uri, video_id, meta, segment)
        return ingest_pb2.SubmitVideoResponse(job_id=job.job_id, video_id=job.video_id)

    async def UploadVideo(self, request_iterator, context):
        first = await anext(aiter(request_iterator), None)
        if first is None or first.WhichOneof("part") != "header":
            raise InvalidInput("the first UploadVideo message must be a header")
        header = first.header
        meta = video_meta(header.metadata)
        segment = segment_spec(header.segment, self.cfg)
        video_id = sources.validate_video_id(header.video_id) if header.video_id else ""

        async def chunks() -> AsyncIterator[bytes]:
            async for message in request_iterator:
                if message.WhichOneof("part") != "chunk":
                    raise InvalidInput("only the first UploadVideo message may be a header")
                if len(message.chunk) > MAX_CHUNK_BYTES:
                    raise InvalidInput(f"chunks must be at most {MAX_CHUNK_BYTES} bytes, got {len(message.chunk)}")
                yield message.chunk

        job, size = await self.core.upload(chunks(), video_id=video_id, filename=header.filename,
                                           size_bytes=header.size_bytes, meta=meta, segment=segment)
        return ingest_pb2.UploadVideoResponse(job_id=job.job_id, video_id=job.video_id, size_bytes=size)

    async def GetJob(self, request, context):
        return ingest_pb2.GetJobResponse(job=job_to_proto(await self.core.get(request.job_id)))

    async def WatchJob(self, request, context) -> AsyncIterator[ingest_pb2.WatchJobResponse]:
        async for job in self.core.watch(request.job_id):
            yield ingest_pb2.WatchJobResponse(job=job_to_proto(job))

    async def CancelJob(self, request, context):
        return ingest_pb2.CancelJobResponse(job=job_to_proto(await self.core.cancel(request.job_id)))

    async def DeleteVideo(self, request, context):
        video_id = sources.validate_video_id(request.video_id)
        return ingest_pb2.DeleteVideoResponse(clips_deleted=await self.core.delete_video(video_id))
