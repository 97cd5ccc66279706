"""The SearchService servicer: requests to ``Query``/``SearchOptions``, results to ``SearchHit``s."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from fractions import Fraction

from services.common.errors import InvalidInput
from services.common.readiness import Pending
from services.gateway.clips import ClipLibrary
from services.gateway.search import Query, SearchCore, SearchOptions, SearchResult
from services.media.timecode import SourceClock, media_timecode
from vidsearch.common.v1 import common_pb2
from vidsearch.gateway.v1 import gateway_pb2, gateway_pb2_grpc

MAX_BATCH = 64
CHUNK = 1 << 20


def source_clock(metadata: Mapping[str, str]) -> SourceClock | None:
    """The clip's source clock as ingest recorded it; None for clips ingested before it did."""
    rate = metadata.get("source_frame_rate", "")
    try:
        clock = SourceClock(metadata.get("source_timecode") or "00:00:00:00", Fraction(rate))
        clock.start_frame()
    except (ValueError, ZeroDivisionError, InvalidInput):
        return None
    return clock if clock.rate > 0 else None


def to_hit(scored: common_pb2.ScoredClip) -> gateway_pb2.SearchHit:
    c = scored.clip
    clock = source_clock(c.metadata)
    return gateway_pb2.SearchHit(
        clip_id=c.clip_id, video_id=c.video_id, start_seconds=c.start_seconds, end_seconds=c.end_seconds,
        start_timecode=media_timecode(c.start_seconds), score=scored.score, caption=c.caption, tags=list(c.tags),
        thumbnail_ref=c.thumbnail_ref, shard=scored.shard, metadata=dict(c.metadata),
        source_timecode=clock.at(c.start_seconds) if clock else "",
        source_end_timecode=clock.at(c.end_seconds) if clock else "",
        frame_rate=str(clock.rate) if clock else "", model_id=c.model_id,
    )


def to_response(result: SearchResult) -> gateway_pb2.SearchResponse:
    return gateway_pb2.SearchResponse(
        hits=[to_hit(h) for h in result.hits], model_id=result.model_id,
        partial=bool(result.failed_shards), failed_shards=result.failed_shards,
        timings=gateway_pb2.Timings(encode_ms=result.encode_ms, search_ms=result.search_ms,
                                    total_ms=result.total_ms, cache_hit=result.cache_hit),
    )


def query_of(request: gateway_pb2.SearchRequest, video: bytes | None = None,
             video_range: tuple[float, float] = (0.0, 0.0)) -> Query:
    kind = request.WhichOneof("query")
    if video is not None:
        if kind is not None:
            raise InvalidInput("SearchByVideo takes the video from the stream; leave the query empty")
        return Query(video=video, video_start_s=video_range[0], video_end_s=video_range[1])
    if kind == "text":
        return Query(text=request.text.text, language=request.text.language)
    if kind == "image":
        return Query(image=request.image)
    if kind == "video":
        v = request.video
        return Query(video=v.data, video_start_s=v.start_seconds, video_end_s=v.end_seconds)
    if kind == "clip_id":
        return Query(clip_id=request.clip_id)
    raise InvalidInput("the query is empty: set text, image, video or clip_id")


def options_of(request: gateway_pb2.SearchRequest) -> SearchOptions:
    return SearchOptions(top_k=request.top_k or 10, filter=request.filter,
                         collapse_by_video=request.collapse_by_video)


class GatewayServicer(gateway_pb2_grpc.SearchServiceServicer):
    """Serves searches once start-up has reached the encoder, and clips' thumbnails and cuts."""

    def __init__(self, core: Pending[SearchCore], clips: ClipLibrary, max_video_bytes: int) -> None:
        self.core = core
        self.clips = clips
        self.max_video_bytes = max_video_bytes

    async def Search(self, request, context):
        core = self.core.get()
        return to_response(await core.search(query_of(request), options_of(request), context.time_remaining()))

    async def BatchSearch(self, request, context):
        core = self.core.get()
        if not request.requests:
            raise InvalidInput("BatchSearch needs at least one request")
        if len(request.requests) > MAX_BATCH:
            raise InvalidInput(f"BatchSearch takes at most {MAX_BATCH} requests, got {len(request.requests)}")
        queries = []
        for i, r in enumerate(request.requests):
            try:
                queries.append((query_of(r), options_of(r)))
            except InvalidInput as exc:
                raise InvalidInput(f"request {i}: {exc}") from None
        timeout = context.time_remaining()
        results = await asyncio.gather(*(core.search(q, o, timeout) for q, o in queries))
        return gateway_pb2.BatchSearchResponse(responses=[to_response(r) for r in results])

    async def SearchByVideo(self, request_iterator, context):
        core = self.core.get()
        search: gateway_pb2.SearchRequest | None = None
        video_range = (0.0, 0.0)
        chunks: list[bytes] = []
        size = 0
        async for message in request_iterator:
            part = message.WhichOneof("part")
            if part == "search":
                if search is not None:
                    raise InvalidInput("SearchByVideo: the search settings must come once, first")
                search, video_range = message.search, (message.start_seconds, message.end_seconds)
            elif part == "chunk":
                if search is None:
                    raise InvalidInput("SearchByVideo: send the search settings before the video chunks")
                size += len(message.chunk)
                if size > self.max_video_bytes:
                    raise InvalidInput(f"SearchByVideo: the video exceeds {self.max_video_bytes} bytes")
                chunks.append(message.chunk)
        if search is None:
            raise InvalidInput("SearchByVideo: the stream had no search settings")
        query = query_of(search, b"".join(chunks), video_range)
        result = await core.search(query, options_of(search), context.time_remaining())
        return gateway_pb2.SearchByVideoResponse(result=to_response(result))

    async def GetThumbnail(self, request, context):
        data = await self.clips.thumbnail(request.clip_id)
        return gateway_pb2.GetThumbnailResponse(image=data, content_type="image/jpeg")

    async def GetClip(self, request, context):
        clip, data = await self.clips.cut(request.clip_id)
        for offset in range(0, len(data), CHUNK):
            first = offset == 0
            yield gateway_pb2.GetClipResponse(
                data=data[offset:offset + CHUNK],
                content_type="video/mp4" if first else "",
                start_seconds=clip.start_seconds if first else 0.0,
                end_seconds=clip.end_seconds if first else 0.0,
            )
