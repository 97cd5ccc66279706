"""One ingest attempt: plan the clips, then decode -> encode -> index as three concurrent stages.

Decode chunks run in the process pool (up to one per process at a time), batches of clips go to
the encoder service, and records go to the shard `shard_for_video` picks. Encoder and shards are
those of the index generation active when the attempt starts; should another generation become
active before the attempt ends (a migration switched), the attempt fails as transient before its
next write and its retry writes to the generation active then. Bounded queues link the
stages, so a slow encoder or index holds decoding back instead of piling frames up in memory.
Before each batch is written the job record learns its clip ids (so a cancel or failure can remove
them later) and whether the job was cancelled meanwhile, in which case the attempt stops there.

`Pipeline.reembed` runs the same stages over a video already indexed, for a re-index: the clips
are the stored ones (no planning), and each keeps its stored record but for its new vector.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from services.common.clip_ids import ClipId, clip_id_for, thumbnail_key
from services.common.errors import DependencyDown
from services.common.generations import GenerationClients, GenerationPool
from services.common.vectors import packed_vector
from services.ingest.decoding import DecodeContext, DecodedClip, DecodePool, plan_video, sample_chunk
from services.ingest.records import Job, JobStage
from services.ingest.segmenting import Segment
from services.ingest.settings import IngestSettings
from services.media.store import MediaStore
from services.media.timecode import SourceClock
from vidsearch.common.v1 import common_pb2
from vidsearch.encoder.v1 import encoder_pb2

log = logging.getLogger(__name__)

STAGE_SECONDS = Histogram(
    "vidsearch_ingest_stage_seconds", "Time per unit of work in each ingest stage (plan: per video; "
    "decode: per chunk of clips; encode, index: per batch).", ["stage"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
CLIPS = Counter("vidsearch_ingest_clips_total", "Clips through each ingest stage.", ["stage"])
VIDEO_SECONDS = Counter("vidsearch_ingest_video_seconds_total", "Seconds of video ingested successfully.")
QUEUE_DEPTH = Gauge("vidsearch_ingest_queue_clips", "Clips waiting between pipeline stages.", ["queue"])

#: Encoder requests stay well under the 64 MiB message limit whatever the model's frame size.
MAX_ENCODE_BYTES = 48 * 1024 * 1024
#: Metadata keys the service sets itself; a submission's extra metadata may not use them.
RESERVED_METADATA = frozenset({"title", "programme", "air_date", "source_uri", "source_timecode",
                               "source_frame_rate"})


@dataclass(frozen=True)
class PipelineLimits:
    """Batching and queueing of one attempt (see `IngestSettings` for what each bounds)."""

    decode_chunk_clips: int = 4
    encode_batch_clips: int = 16
    queue_clips: int = 32
    rpc_timeout_s: float = 120.0


@dataclass(frozen=True)
class Outcome:
    clips: int
    video_seconds: float


#: Records progress for the job (fields to set, clip ids about to be written). Raises
#: ``JobCancelled`` or ``Superseded`` when the attempt must stop.
Report = Callable[[dict[str, object], list[str] | None], Awaitable[None]]
#: A decoded clip's record, every field set but its vector and model id.
Template = Callable[[DecodedClip], common_pb2.ClipRecord]


@dataclass(frozen=True)
class VideoWrite:
    """What one attempt writes: which video, where its frames come from, and each clip's record."""

    video_id: str
    source: str  # a job source: ``file://...`` or ``media:<key>``
    template: Template
    # Whether to store each clip's thumbnail (a re-embed keeps the stored ones: same keys, same clips).
    thumbnails: bool = True
    # The job writing, sent with each upsert so a DeleteVideo can fence it at the shards; "" for a re-embed.
    writer: str = ""


async def _no_report(fields: dict[str, object], writing: list[str] | None) -> None:
    """A re-embed has no job record to report to."""


def clip_metadata(job: Job, clock: SourceClock | None = None) -> dict[str, str]:
    """The metadata map every clip of the job carries (empty values left out, so filters on them miss).

    With the source's clock, ``source_timecode`` (its first frame's timecode) and ``source_frame_rate``
    ("30000/1001"), from which the gateway labels each hit in the source's own timecode.
    """
    meta = job.spec.meta
    fields = {**meta.extra, "title": meta.title, "programme": meta.programme, "air_date": meta.air_date,
              "source_uri": job.spec.source}
    if clock is not None:
        fields |= {"source_timecode": clock.start, "source_frame_rate": str(clock.rate)}
    return {k: v for k, v in fields.items() if v}


class Pipeline:
    """Runs attempts at jobs; shared by every worker task of a process."""

    def __init__(self, generations: GenerationPool, media: MediaStore, pool: DecodePool,
                 ctx: DecodeContext, limits: PipelineLimits) -> None:
        self.generations = generations
        self.media = media
        self.pool = pool
        self.ctx = ctx
        self.limits = limits

    @classmethod
    def from_settings(cls, cfg: IngestSettings, generations: GenerationPool, media: MediaStore) -> Pipeline:
        """A pipeline with its own decode pool (closed by its owner), as ``cfg`` sets decoding and batching."""
        pool = DecodePool(cfg.n_decode_processes)
        ctx = DecodeContext(cfg.allowed_roots, media.root, pool.threads, cfg.min_clip_seconds,
                            cfg.min_shot_seconds, cfg.shot_threshold, cfg.thumbnail_max_side)
        limits = PipelineLimits(cfg.decode_chunk_clips, cfg.encode_batch_clips, cfg.queue_clips,
                                cfg.rpc_timeout_seconds)
        return cls(generations, media, pool, ctx, limits)

    async def run(self, job: Job, report: Report) -> Outcome:
        """One attempt at ``job``, written to the generation active when it starts, for the whole attempt."""
        clients = self.generations.snapshot()
        info = await clients.encoder.info(timeout_s=self.limits.rpc_timeout_s)
        clients.check_model(info.model_id)
        started = time.perf_counter()
        plan = await self.pool.run(plan_video, self.ctx, job.spec.source, job.spec.segment)
        STAGE_SECONDS.labels("plan").observe(time.perf_counter() - started)
        segments = plan.segments
        await report({"stage": JobStage.DECODING.value, "clips_total": len(segments),
                      "video_seconds": plan.duration_s}, None)
        video_id, tags, metadata = job.video_id, list(job.spec.meta.tags), clip_metadata(job, plan.clock)

        def template(clip: DecodedClip) -> common_pb2.ClipRecord:
            return common_pb2.ClipRecord(
                clip_id=clip_id_for(video_id, clip.start_s), video_id=video_id, start_seconds=clip.start_s,
                end_seconds=clip.end_s, tags=tags, thumbnail_ref=thumbnail_key(video_id, clip.start_s),
                metadata=metadata)

        run = _Attempt(self, clients, VideoWrite(video_id, job.spec.source, template, writer=job.job_id), report,
                       info)
        await run.stages(segments)
        VIDEO_SECONDS.inc(plan.duration_s)
        return Outcome(len(segments), plan.duration_s)

    async def reembed(self, video_id: str, source: str, stored: Sequence[common_pb2.ClipRecord]) -> Outcome:
        """Embeds the stored clips of a video again, from ``source``, with the active generation's encoder,
        into its shards. Each clip keeps its stored id, time range, caption, tags, thumbnail and
        metadata, so the video's clips come out as they were but for their vectors and model id.
        """
        clients = self.generations.snapshot()
        info = await clients.encoder.info(timeout_s=self.limits.rpc_timeout_s)
        clients.check_model(info.model_id)
        by_id = {r.clip_id: r for r in stored}
        # The clip id, not the stored start (a float), is the truth about where a clip starts.
        segments = sorted((Segment(ClipId.parse(r.clip_id).start_s, r.end_seconds) for r in stored),
                          key=lambda s: s.start_s)

        def template(clip: DecodedClip) -> common_pb2.ClipRecord:
            record = common_pb2.ClipRecord()
            record.CopyFrom(by_id[clip_id_for(video_id, clip.start_s)])
            record.ClearField("vector")
            return record

        # It writes to the generation it was built for, which is not (yet) the active one of the stack.
        run = _Attempt(self, clients, VideoWrite(video_id, source, template, thumbnails=False), _no_report, info,
                       follow_active=False)
        await run.stages(segments)
        return Outcome(len(segments), max((s.end_s for s in segments), default=0.0))


class _Attempt:
    """The three stages of one attempt and the queues between them."""

    def __init__(self, pipeline: Pipeline, clients: GenerationClients, video: VideoWrite, report: Report,
                 info: encoder_pb2.InfoResponse, *, follow_active: bool = True) -> None:
        self.p = pipeline
        self.clients = clients
        # Whether the attempt writes to whichever generation is active (a job), or to one it was given.
        self.follow_active = follow_active
        self.video = video
        self.report = report
        self.num_frames = num_frames = info.frames_per_clip
        self.size = size = info.image_size
        self.crop = info.crop or "round"  # as the encoder's model crops
        limits = pipeline.limits
        clip_bytes = num_frames * size * size * 3
        self.batch = max(1, min(limits.encode_batch_clips, MAX_ENCODE_BYTES // clip_bytes))
        self.decoded: asyncio.Queue[DecodedClip | None] = asyncio.Queue(limits.queue_clips)
        self.encoded: asyncio.Queue[tuple[list[DecodedClip], np.ndarray, str] | None] = asyncio.Queue(
            max(1, limits.queue_clips // self.batch))
        self.decoding_done = False
        self.encoding_done = False

    async def stages(self, segments: list) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._decode(segments))
                group.create_task(self._encode())
                group.create_task(self._index())
        except BaseExceptionGroup as eg:
            raise _first_error(eg) from None
        finally:
            self._drain()

    def _drain(self) -> None:
        """Empties the queues (of a failed attempt), keeping the queue gauge true."""
        while not self.decoded.empty():
            if self.decoded.get_nowait() is not None:
                QUEUE_DEPTH.labels("decoded").dec()
        while not self.encoded.empty():
            item = self.encoded.get_nowait()
            if item is not None:
                QUEUE_DEPTH.labels("encoded").dec(len(item[0]))

    def _stage(self) -> str:
        if not self.decoding_done:
            return JobStage.DECODING.value
        return JobStage.INDEXING.value if self.encoding_done else JobStage.ENCODING.value

    async def _decode(self, segments: list) -> None:
        chunk = self.p.limits.decode_chunk_clips
        chunks = [segments[i:i + chunk] for i in range(0, len(segments), chunk)]
        pending: collections.deque[asyncio.Task] = collections.deque()

        async def one(part: list) -> tuple[list[DecodedClip], float]:
            started = time.perf_counter()
            clips = await self.p.pool.run(sample_chunk, self.p.ctx, self.video.source, part,
                                          self.num_frames, self.size, self.crop)
            return clips, time.perf_counter() - started

        try:
            for part in chunks:
                pending.append(asyncio.ensure_future(one(part)))
                if len(pending) >= self.p.pool.processes:
                    await self._emit(await pending.popleft())
            while pending:
                await self._emit(await pending.popleft())
        finally:
            for task in pending:
                task.cancel()
        self.decoding_done = True
        await self.decoded.put(None)

    async def _emit(self, result: tuple[list[DecodedClip], float]) -> None:
        clips, seconds = result
        STAGE_SECONDS.labels("decode").observe(seconds)
        CLIPS.labels("decoded").inc(len(clips))
        for clip in clips:
            await self.decoded.put(clip)
            QUEUE_DEPTH.labels("decoded").inc()

    async def _encode(self) -> None:
        finished = False
        while not finished:
            first = await self.decoded.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < self.batch and not self.decoded.empty():
                item = self.decoded.get_nowait()
                if item is None:
                    finished = True
                    break
                batch.append(item)
            QUEUE_DEPTH.labels("decoded").dec(len(batch))
            started = time.perf_counter()
            vectors, model_id = await self.clients.encoder.encode_frames(
                [c.frames for c in batch], timeout_s=self.p.limits.rpc_timeout_s)
            self.clients.check_model(model_id)
            STAGE_SECONDS.labels("encode").observe(time.perf_counter() - started)
            if len(vectors) != len(batch):
                raise DependencyDown(f"encoder returned {len(vectors)} embeddings for {len(batch)} clips")
            CLIPS.labels("encoded").inc(len(batch))
            await self.encoded.put((batch, vectors, model_id))
            QUEUE_DEPTH.labels("encoded").inc(len(batch))
        self.encoding_done = True
        await self.encoded.put(None)

    async def _index(self) -> None:
        shard = self.clients.shards.for_video(self.video.video_id)
        done = 0
        while (item := await self.encoded.get()) is not None:
            batch, vectors, model_id = item
            QUEUE_DEPTH.labels("encoded").dec(len(batch))
            started = time.perf_counter()
            records = [self._record(clip, vector, model_id) for clip, vector in zip(batch, vectors, strict=True)]
            # Record the ids before writing them: a cancel or failure must be able to find every clip.
            await self.report({}, [r.clip_id for r in records])
            self._check_generation()
            if self.video.thumbnails:
                await asyncio.to_thread(self._put_thumbnails, batch)
            write = asyncio.ensure_future(shard.upsert(records, timeout_s=self.p.limits.rpc_timeout_s,
                                                       writer=self.video.writer))
            try:
                await asyncio.shield(write)
            except asyncio.CancelledError:
                # A sent upsert cannot be recalled: the attempt ends only once it has landed, so the
                # clean-up of a cancel (and a DeleteVideo waiting on it) comes after it, not before.
                await asyncio.gather(write, return_exceptions=True)
                raise
            STAGE_SECONDS.labels("index").observe(time.perf_counter() - started)
            CLIPS.labels("indexed").inc(len(records))
            done += len(records)
            await self.report({"clips_done": done, "stage": self._stage()}, None)

    def _check_generation(self) -> None:
        """A job writes only while its generation is still the one it was meant for: the active one (or,
        for a filler that named its generation, that one while it exists). After a switch it stops and
        its retry writes to the new generation, so the old one gets no write later than one routing poll
        plus one batch after the switch, which the migration's grace period covers."""
        name = self.clients.name
        routing = self.p.generations.routing
        if self.follow_active and routing.active != name:
            raise DependencyDown(f"the active index generation changed from {name} to {routing.active} while "
                                 "the job ran; its retry writes to the new one")
        if self.p.generations.get(name) is None:
            raise DependencyDown(f"index generation {name} was dropped while the job ran")

    def _record(self, clip: DecodedClip, vector: np.ndarray, model_id: str) -> common_pb2.ClipRecord:
        record = self.video.template(clip)
        record.vector.CopyFrom(packed_vector(vector))
        record.model_id = model_id
        return record

    def _put_thumbnails(self, batch: list[DecodedClip]) -> None:
        for clip in batch:
            self.p.media.put(thumbnail_key(self.video.video_id, clip.start_s), clip.thumbnail)


def _first_error(group: BaseExceptionGroup) -> BaseException:
    """The exception that stopped the stages (the others were cancelled because of it)."""
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            return _first_error(exc)
        if not isinstance(exc, asyncio.CancelledError):
            return exc
    return group.exceptions[0]
